"""User accounts (superusers manage them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from taskledger.schemas.base import Page, ReadModel, StrictModel


class UserCreate(StrictModel):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    is_superuser: bool = False


class UserUpdate(StrictModel):
    """Fields to change; omitted fields stay as they are."""

    is_active: bool | None = None
    is_superuser: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class UserRead(ReadModel):
    id: uuid.UUID
    email: str
    is_superuser: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


UserPage = Page[UserRead]
