"""Project API keys: created once with their secret, listed without it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.enums import Scope
from taskledger.schemas.base import Page, ReadModel, StrictModel


class ApiKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Scope] = Field(min_length=1, description="Any of `read`, `write`, `admin`.")
    agent_id: uuid.UUID | None = Field(
        default=None, description="Bind the key to one agent of the project (it acts as it)."
    )


class ApiKeyRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    agent_id: uuid.UUID | None
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The new key, with its secret: shown this once and never again."""

    key: str = Field(description="The secret, `tl_<prefix>_<secret>`. Store it now.")


ApiKeyPage = Page[ApiKeyRead]
