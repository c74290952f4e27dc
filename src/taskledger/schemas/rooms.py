"""Rooms: the collaboration spaces of a project, and the agents and users taking part (seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.enums import ParticipantType, RoomRole
from taskledger.schemas.base import Page, PatchModel, ReadModel, StrictModel
from taskledger.schemas.limits import Flag


class RoomCreate(StrictModel):
    name: str = Field(min_length=1, max_length=255, description="Unique within the project.")
    topic: str | None = Field(default=None, max_length=10_000)
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )


class RoomUpdate(PatchModel):
    """Fields to change; `topic` may be cleared with `null`."""

    not_null = frozenset({"name", "archived"})

    name: str | None = Field(default=None, min_length=1, max_length=255)
    topic: str | None = Field(default=None, max_length=10_000)
    archived: Flag | None = Field(
        default=None,
        description="`true` archives the room (it then refuses new participants and tasks); "
        "`false` reopens it.",
    )


class RoomRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    topic: str | None
    created_by: uuid.UUID | None
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


RoomPage = Page[RoomRead]


class ParticipantJoin(StrictModel):
    """Let an agent of the room's project, or a user who may see it, join the room."""

    participant_type: ParticipantType
    participant_id: uuid.UUID
    role: RoomRole = RoomRole.MEMBER


class ParticipantRead(ReadModel):
    id: int
    room_id: uuid.UUID
    project_id: uuid.UUID
    participant_id: uuid.UUID
    participant_type: ParticipantType
    role: RoomRole
    joined_at: datetime
    left_at: datetime | None


ParticipantPage = Page[ParticipantRead]
