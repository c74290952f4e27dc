"""User accounts (superusers manage them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.schemas.base import Page, ReadModel, StrictModel
from taskledger.schemas.limits import Flag


class UserCreate(StrictModel):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    is_superuser: Flag = False


class UserUpdate(StrictModel):
    """Fields to change; omitted fields stay as they are."""

    is_active: Flag | None = None
    is_superuser: Flag | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class UserRead(ReadModel):
    id: uuid.UUID
    email: str
    is_superuser: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


UserPage = Page[UserRead]
