"""Agent sessions: a period of work of one agent, with the parameters it ran under (seed 001)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from taskledger.enums import SessionStatus
from taskledger.schemas.base import Page, ReadModel, StrictModel
from taskledger.schemas.limits import AwareDatetime, JsonObject


class SessionCreate(StrictModel):
    """Start a session for an agent of the project; it begins `active`."""

    agent_id: uuid.UUID
    experimental_parameters: JsonObject | None = None
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )


class SessionEnd(StrictModel):
    """End an active session with its outcome."""

    status: SessionStatus = Field(description="`completed`, `terminated` or `error`.")
    ended_at: AwareDatetime | None = Field(default=None, description="Defaults to now.")

    @field_validator("status")
    @classmethod
    def _not_active(cls, value: SessionStatus) -> SessionStatus:
        if value is SessionStatus.ACTIVE:
            raise ValueError("a session ends as completed, terminated or error")
        return value


class SessionRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    agent_id: uuid.UUID
    status: SessionStatus
    experimental_parameters: dict[str, Any] | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


SessionPage = Page[SessionRead]
