"""Base classes of every schema: strict input (unknown fields are 422), ORM-readable output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset, e.g. 2025-01-31T12:00:00Z")
    return value


#: A timestamp in requests: ISO 8601 with an offset; naive values are refused.
AwareDatetime = Annotated[datetime, AfterValidator(_require_aware)]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
