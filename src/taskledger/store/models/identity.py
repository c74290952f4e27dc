"""Users, projects and API keys: who may do what, and where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from taskledger.store.models.base import NEVER_REUSE_KEYS, Base, Timestamps, UuidPrimaryKey
from taskledger.store.types import BigIntPK, JSONType, UTCDateTime, utcnow

if TYPE_CHECKING:
    from taskledger.store.models.work import Agent


class User(UuidPrimaryKey, Timestamps, Base):
    """A person who logs in with email and password."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class Project(UuidPrimaryKey, Timestamps, Base):
    """The unit of ownership and isolation: every record below belongs to exactly one project."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True
    )

    owner: Mapped[User] = relationship()


class ApiKey(Timestamps, Base):
    """A project-scoped secret; only ``key_hash`` is stored, the secret is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    agent: Mapped[Agent | None] = relationship()


class LoginFailure(Base):
    """One failed login: the throttle's sliding window, shared by every replica.

    ``account`` is the email as typed (stripped, lower-cased), whether or not such a user exists,
    so that guessing at unknown accounts is throttled the same way. A successful login sets it to
    NULL on that account's rows: they stop counting for the account and keep counting for their
    ``address``. ``pending`` marks an attempt whose password is still being checked; it counts
    like a failure, so that concurrent guesses cannot slip past the limit.
    """

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account: Mapped[str | None] = mapped_column(String(320), nullable=True)
    address: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    pending: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_login_failures_account_occurred_at", "account", "occurred_at"),
        Index("ix_login_failures_address_occurred_at", "address", "occurred_at"),
        Index("ix_login_failures_occurred_at", "occurred_at"),
        NEVER_REUSE_KEYS,
    )
