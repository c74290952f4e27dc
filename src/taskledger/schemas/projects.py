"""Projects: the unit of ownership and isolation."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.schemas.base import Page, ReadModel, StrictModel


class ProjectCreate(StrictModel):
    name: str = Field(min_length=1, max_length=255)


class ProjectUpdate(StrictModel):
    """Rename a project or hand it to another user."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    owner_id: uuid.UUID | None = None


class ProjectRead(ReadModel):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


ProjectPage = Page[ProjectRead]
