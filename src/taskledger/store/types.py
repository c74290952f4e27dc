"""Column types that behave the same on SQLite and PostgreSQL.

``UTCDateTime`` is the reason this module exists: SQLite has no time zone support, so values are
normalised to naive UTC on the way in and given back their UTC offset on the way out. That keeps
string comparison on SQLite equal to instant comparison, which keyset paging relies on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from taskledger.store.engine import is_sqlite


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def as_utc_or_none(value: object) -> datetime | None:
    """A timestamp read back from an aggregate (``MIN``, ``MAX``) as aware UTC, or ``None``.

    SQLite returns an aggregate over an expression as ISO 8601 text rather than through the
    column's type, so text is parsed; naive values are taken to be UTC, as by :func:`as_utc`.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return as_utc(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        aware = as_utc(value)
        if is_sqlite(dialect):
            # SQLite stores text; naive UTC keeps lexical order equal to time order.
            return aware.replace(tzinfo=None)
        return aware

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from SQLite expressions such as min()/max()
            value = datetime.fromisoformat(value)
        return as_utc(value)


# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere. Python ``None`` is stored
# as SQL NULL (not the JSON text 'null'), so "no value" reads the same on every path.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# 64-bit keys for high-volume tables; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
