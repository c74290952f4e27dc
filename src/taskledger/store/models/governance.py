"""Retention holds and the audit log of every retention preview, execution and restore."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from taskledger.enums import HoldScope, RetentionMode, RetentionOutcome, RetentionTrigger
from taskledger.store.models.base import NEVER_REUSE_KEYS, Base, one_of
from taskledger.store.types import BigIntPK, JSONType, UTCDateTime, utcnow


class RetentionHold(Base):
    """Shields a project, agent, task, run, session or room (and all beneath it) from every
    delete."""

    __tablename__ = "retention_holds"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    # Text, because runs have integer keys and the other scopes UUIDs.
    target_id: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(320), nullable=True)

    __table_args__ = (
        one_of("scope", HoldScope),
        Index("ix_retention_holds_scope_target_id", "scope", "target_id"),
        NEVER_REUSE_KEYS,
    )


class RetentionRun(Base):
    """One row of the audit log. No preset ever prunes this table."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(320), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    policy_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    policy_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    plan_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    counts: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    archive_uri: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    started_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(
        String(32), nullable=False, default=RetentionOutcome.RUNNING.value
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Who held the single-runner lock for this work (executions and restores), so that the next
    #: runner can tell the row of a holder that died and mark it ``interrupted``.
    holder: Mapped[str | None] = mapped_column(String(320), nullable=True)
    #: On a preview: the execution that used its ``plan_id`` (a plan is single-use).
    consumed_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        one_of("trigger", RetentionTrigger),
        one_of("mode", RetentionMode),
        NEVER_REUSE_KEYS,
    )


class DeletionEvent(Base):
    """One deletion outside a confirmed retention run; the spike guard's shared sliding window."""

    __tablename__ = "deletion_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str] = mapped_column(String(320), nullable=False)

    __table_args__ = (NEVER_REUSE_KEYS,)


class RetentionLease(Base):
    """The single-runner lease on SQLite (PostgreSQL uses an advisory lock instead)."""

    __tablename__ = "retention_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(320), nullable=True)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ScheduleTick(Base):
    """The last schedule tick claimed, so that N replicas run each tick exactly once."""

    __tablename__ = "retention_schedule"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_tick: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
