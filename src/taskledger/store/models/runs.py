"""Run history: one row per execution of a named task (seed 003's ``agents_tasks``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskledger.enums import RunStatus
from taskledger.store.models.base import NEVER_REUSE_KEYS, Base, Timestamps, one_of
from taskledger.store.types import BigIntPK, JSONType, UTCDateTime, utcnow


class Run(Timestamps, Base):
    """One execution of a task by an agent or orchestrator.

    ``started_at`` is required (it defaults to the time of recording) because it is the sort key
    of keyset paging and the age column of retention.

    Two ids: ``id`` is the integer key, called ``run_pk`` wherever it is passed around (paths,
    parameters, variables); ``run_id`` is the orchestrator's own string for the run.
    """

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True, index=True
    )
    task: Mapped[str] = mapped_column(String(64), nullable=False)
    run_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    started_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    inputs: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    outputs_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    log_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)
    approval_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    approver: Mapped[str | None] = mapped_column(String(128), nullable=True)
    webhook_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        one_of("status", RunStatus),
        UniqueConstraint("project_id", "idempotency_key"),
        Index("ix_runs_started_at_desc_id_desc", started_at.desc(), id.desc()),
        # Retention rules and stats select by status and age: index-only on both backends.
        Index("ix_runs_status_started_at", "status", "started_at"),
        Index(
            "ix_runs_project_id_started_at_desc_id_desc",
            project_id,
            started_at.desc(),
            id.desc(),
        ),
        NEVER_REUSE_KEYS,
    )
