"""Base classes of every schema: strict input (unknown fields are 422), ORM-readable output."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")
S = TypeVar("S", bound=StrEnum)

#: The description of a list's ``project_id`` query parameter.
PROJECT_QUERY = "The project to list; required for users, implied for API keys."


def _contains_nul(data: Any) -> bool:
    """Whether any string in ``data`` (nested JSON included, keys too) holds a NUL character."""
    pending = [data]
    while pending:  # a loop, not recursion: bodies may nest deeply
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused; text is kept exactly as sent.

    NUL characters are refused anywhere in a body: PostgreSQL cannot store them in text or JSON,
    and SQLite must answer the same. The other input limits are types in
    :mod:`taskledger.schemas.limits`.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if _contains_nul(data):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return data


class PatchModel(StrictModel):
    """Partial updates: omitted fields stay as they are, explicit ``null`` clears a field.

    ``null`` is refused (422) for the fields named in ``not_null``, whose columns cannot be empty;
    services apply ``model_dump(exclude_unset=True)``.
    """

    not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _refuse_nulls(self) -> PatchModel:
        nulled = sorted(
            name for name in self.model_fields_set & self.not_null if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"these fields cannot be null: {', '.join(nulled)}")
        return self


class ReadModel(BaseModel):
    """Response bodies, built straight from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated list."""

    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class AddressedFilters(BaseModel, Generic[S]):
    """The query of a list of records addressed to agents (connections, instructions), whose
    statuses are ``S``; unknown query parameters are ignored, as everywhere."""

    project_id: uuid.UUID | None = Field(default=None, description=PROJECT_QUERY)
    status: S | None = None
    agent_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


class ErrorMessage(BaseModel):
    """An error answered with a message: ``{"detail": "..."}`` (every error but a 422)."""

    detail: str


class ConflictMessage(BaseModel):
    """A 409: a message, or an object with a ``message`` and what the conflict is about (the
    tasks of a dependency cycle, a task's blockers, the tasks that depend on one)."""

    detail: str | dict[str, Any]
