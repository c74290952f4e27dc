"""Agent connections: live links kept alive by heartbeats (seed 001)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.enums import ConnectionStatus
from taskledger.schemas.base import Page, ReadModel, StrictModel


class ConnectionCreate(StrictModel):
    """Open a connection for an agent of the project, optionally within one of its sessions."""

    agent_id: uuid.UUID
    session_id: uuid.UUID | None = Field(
        default=None, description="An active session of the same agent."
    )
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )


class ConnectionClose(StrictModel):
    reason: str = Field(min_length=1, max_length=255)


class ConnectionRead(ReadModel):
    id: int
    project_id: uuid.UUID
    agent_id: uuid.UUID
    session_id: uuid.UUID | None
    status: ConnectionStatus
    last_heartbeat_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    created_at: datetime
    updated_at: datetime


ConnectionPage = Page[ConnectionRead]
