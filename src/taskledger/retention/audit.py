"""The audit log (``retention_runs``): one row per preview, execution, restore, seed-endpoint
call and SQL-function call, opened before the work starts and closed when it ends.

Each write is its own short transaction, so the row survives whatever happens to the work it
describes: a crash leaves it ``running`` with its start time, which is itself evidence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionTrigger
from taskledger.services.pagination import Keyset, paginate
from taskledger.store.models import RetentionRun
from taskledger.store.types import utcnow

AUDIT_KEYSET = Keyset("retention_runs", (RetentionRun.started_at, RetentionRun.id), descending=True)


@dataclass(frozen=True)
class AuditHandle:
    """The audit row of one piece of work in progress."""

    id: int
    started_at: datetime

    @property
    def archive_run_id(self) -> str:
        """The name of this run's archive directory: the audit id, plus randomness so that two
        databases sharing one archive root never collide."""
        return f"{self.id:08d}-{uuid.uuid4().hex[:8]}"


def open_audit(
    sessions: sessionmaker[Session],
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    mode: RetentionMode | str,
    policy_name: str | None = None,
    policy_hash: str | None = None,
    plan_id: str | None = None,
    reason: str | None = None,
) -> AuditHandle:
    """Write the audit row of work about to start (outcome ``running``) and return its handle."""
    now = utcnow()
    with sessions.begin() as session:
        row = RetentionRun(
            actor=actor,
            trigger=RetentionTrigger(trigger).value,
            mode=RetentionMode(mode).value,
            policy_name=policy_name,
            policy_hash=policy_hash,
            plan_id=plan_id,
            reason=reason,
            started_at=now,
            outcome="running",
        )
        session.add(row)
        session.flush()
        return AuditHandle(id=row.id, started_at=now)


def close_audit(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    *,
    outcome: str,
    counts: Any = None,
    archive_uri: str | None = None,
    error: str | None = None,
) -> None:
    """Record how the work ended: ``outcome`` (e.g. ``ok``, ``failed``, ``refused``), the per-rule
    counts, the archive written, and the error if any."""
    with sessions.begin() as session:
        session.execute(
            update(RetentionRun)
            .where(RetentionRun.id == handle.id)
            .values(
                outcome=outcome,
                counts=counts,
                archive_uri=archive_uri,
                error=error,
                finished_at=utcnow(),
            )
        )


def record(
    sessions: sessionmaker[Session],
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    mode: RetentionMode | str,
    outcome: str,
    counts: Any = None,
    archive_uri: str | None = None,
    error: str | None = None,
    **fields: Any,
) -> AuditHandle:
    """Open and close an audit row in one go, for work that is over when it is recorded."""
    handle = open_audit(sessions, actor=actor, trigger=trigger, mode=mode, **fields)
    close_audit(
        sessions, handle, outcome=outcome, counts=counts, archive_uri=archive_uri, error=error
    )
    return handle


def list_audit(
    session: Session, *, limit: int, cursor: str | None, mode: str | None = None
) -> tuple[list[RetentionRun], str | None]:
    """One page of the audit log, newest first."""
    stmt = select(RetentionRun)
    if mode:
        stmt = stmt.where(RetentionRun.mode == mode)
    return paginate(session, stmt, AUDIT_KEYSET, limit=limit, cursor=cursor, filters={"mode": mode})
