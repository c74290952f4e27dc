"""Instructions to agents, and the acknowledgements that answer them (seed 001)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from taskledger.enums import AcknowledgementStatus, InstructionStatus
from taskledger.schemas.base import Page, PatchModel, ReadModel, StrictModel
from taskledger.schemas.limits import AwareDatetime, JsonObject, JsonValue


class InstructionCreate(StrictModel):
    """A message to an agent of the project; it starts `pending`."""

    agent_id: uuid.UUID
    payload: JsonValue = Field(description="What the agent is told to do: any JSON value.")
    metadata: JsonObject | None = None
    expires_at: AwareDatetime | None = None
    session_id: uuid.UUID | None = Field(
        default=None, description="An active session of the same agent."
    )
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )


class InstructionUpdate(PatchModel):
    """A new status, and/or new metadata (`null` clears it)."""

    not_null = frozenset({"status"})

    status: InstructionStatus | None = None
    metadata: JsonObject | None = None


class InstructionRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    agent_id: uuid.UUID | None = Field(description="Null once the agent has been deleted.")
    session_id: uuid.UUID | None
    payload: Any
    # The ORM attribute is ``metadata_``: ``metadata`` is taken by SQLAlchemy.
    metadata: dict[str, Any] | None = Field(validation_alias="metadata_")
    status: InstructionStatus
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


InstructionPage = Page[InstructionRead]


class AcknowledgementCreate(StrictModel):
    """An agent's answer to an instruction."""

    status: AcknowledgementStatus
    message: str | None = Field(default=None, max_length=65536)


class AcknowledgementRead(ReadModel):
    id: int
    instruction_id: uuid.UUID
    agent_id: uuid.UUID | None
    status: AcknowledgementStatus
    message: str | None
    created_at: datetime


AcknowledgementPage = Page[AcknowledgementRead]
