"""The declarative base, the constraint naming convention and the shared column helpers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taskledger.enums import values
from taskledger.store.types import UTCDateTime, utcnow

# Stable constraint names make migrations (and SQLite batch rebuilds) deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every taskledger table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UuidPrimaryKey:
    """A random UUID primary key (projects, users, agents, tasks, sessions, instructions)."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


class Timestamps:
    """``created_at`` and ``updated_at``, both aware UTC, maintained by the ORM."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


#: Table options of tables with an integer key: on SQLite, ``AUTOINCREMENT`` keeps a deleted row's
#: id from being given to a new row, so an archived row can always be restored under its own key.
#: (PostgreSQL sequences never hand out a value twice.)
NEVER_REUSE_KEYS = {"sqlite_autoincrement": True}


def one_of(column: str, enum: type[StrEnum], *, nullable: bool = False) -> CheckConstraint:
    """A CHECK constraint that keeps ``column`` inside the values of ``enum`` (or NULL)."""
    allowed = ", ".join(f"'{v}'" for v in values(enum))
    condition = f"{column} IN ({allowed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=column)
