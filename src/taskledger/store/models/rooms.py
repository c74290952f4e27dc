"""Rooms, the shared spaces of a project that tasks and agents belong to, and who takes part."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from taskledger.enums import ParticipantType, RoomRole
from taskledger.store.models.base import (
    NEVER_REUSE_KEYS,
    Base,
    Timestamps,
    UuidPrimaryKey,
    one_of,
)
from taskledger.store.types import BigIntPK, UTCDateTime, utcnow


class Room(UuidPrimaryKey, Timestamps, Base):
    """A collaboration space of one project; its name is unique within the project."""

    __tablename__ = "rooms"

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    topic: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # An archived room keeps its history but takes no new participants or tasks.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class RoomParticipant(Base):
    """One participation of an agent or a user in a room, from joining until leaving."""

    __tablename__ = "room_participants"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    room_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False
    )
    # Polymorphic (agent or user), so no foreign key: deleting an agent removes its
    # participations in the delete path (taskledger.retention.execute.side_effects).
    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, index=True)
    participant_type: Mapped[str] = mapped_column(String(16), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default=RoomRole.MEMBER.value)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        one_of("participant_type", ParticipantType),
        one_of("role", RoomRole),
        Index("ix_room_participants_room_id_joined_at", "room_id", "joined_at"),
        # One active participation per participant and room; past ones stay as history.
        Index(
            "uq_room_participants_active",
            "room_id",
            "participant_type",
            "participant_id",
            unique=True,
            sqlite_where=text("left_at IS NULL"),
            postgresql_where=text("left_at IS NULL"),
        ),
        NEVER_REUSE_KEYS,
    )
