"""Agents: the persistent workers of a project (seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from taskledger.enums import AgentStatus
from taskledger.schemas.base import Page, PatchModel, ReadModel, StrictModel
from taskledger.schemas.limits import Flag, JsonObject

Capabilities = list[str]


class AgentCreate(StrictModel):
    name: str = Field(min_length=1, max_length=255, description="Unique within the project.")
    nickname: str | None = Field(default=None, max_length=255)
    agent_type: str = Field(default="generic", min_length=1, max_length=100)
    status: AgentStatus = AgentStatus.OFFLINE
    capabilities: Capabilities = Field(default_factory=list, max_length=1000)
    config: JsonObject | None = None
    is_active: Flag = True
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )


class AgentUpdate(PatchModel):
    """Fields to change; `nickname` and `config` may be cleared with `null`."""

    not_null = frozenset({"name", "agent_type", "status", "capabilities", "is_active"})

    name: str | None = Field(default=None, min_length=1, max_length=255)
    nickname: str | None = Field(default=None, max_length=255)
    agent_type: str | None = Field(default=None, min_length=1, max_length=100)
    status: AgentStatus | None = None
    capabilities: Capabilities | None = Field(default=None, max_length=1000)
    config: JsonObject | None = None
    is_active: Flag | None = None


class AgentRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    nickname: str | None
    agent_type: str
    status: AgentStatus
    capabilities: list[Any]
    config: dict[str, Any] | None
    is_active: bool
    last_heartbeat_at: datetime | None
    created_at: datetime
    updated_at: datetime


AgentPage = Page[AgentRead]
