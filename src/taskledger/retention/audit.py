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

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionOutcome, RetentionTrigger
from taskledger.errors import NotFoundError
from taskledger.schemas.limits import MAX_INT64
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
            outcome=RetentionOutcome.RUNNING.value,
        )
        session.add(row)
        session.flush()
        return AuditHandle(id=row.id, started_at=now)


def close_audit(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    *,
    outcome: RetentionOutcome | str,
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
                outcome=RetentionOutcome(outcome).value,
                counts=counts,
                archive_uri=archive_uri,
                error=error,
                finished_at=utcnow(),
            )
        )


def note_archive(sessions: sessionmaker[Session], handle: AuditHandle, uri: str) -> None:
    """Record the archive of work in progress, before its first part is written: a run that
    is killed part-way still names the archive holding every part it wrote."""
    with sessions.begin() as session:
        session.execute(
            update(RetentionRun).where(RetentionRun.id == handle.id).values(archive_uri=uri)
        )


#: The error of a row whose runner stopped before finishing, by mode.
INTERRUPTED_ERRORS = {
    RetentionMode.EXECUTE.value: (
        "The runner stopped before finishing (its lock holder {holder} was gone when {by} took "
        "the lock at {at}). Every batch it committed is in a part its archive's manifest lists: "
        "restore archive_uri to put those rows back. A part verify finds stored but unlisted "
        "holds rows it never deleted: move that file out of the archive first."
    ),
    RetentionMode.RESTORE.value: (
        "The restore stopped before finishing (its lock holder {holder} was gone when {by} took "
        "the lock at {at}). Rows it restored stay restored; restore is idempotent, so run it "
        "again to finish."
    ),
}


def mark_interrupted(conn: Connection, holder: str, *, by: str, now: datetime) -> int:
    """Close the rows still ``running`` under lock holder ``holder``, a runner known to be gone,
    as ``interrupted``; returns how many. Called by the runner that displaced it, in the
    transaction that takes the lock, so a live run's row is never touched."""
    marked = 0
    for mode, message in INTERRUPTED_ERRORS.items():
        marked += conn.execute(
            update(RetentionRun)
            .where(
                RetentionRun.holder == holder,
                RetentionRun.outcome == RetentionOutcome.RUNNING.value,
                RetentionRun.mode == mode,
            )
            .values(
                outcome=RetentionOutcome.INTERRUPTED.value,
                finished_at=now,
                error=message.format(holder=holder, by=by, at=now.isoformat(timespec="seconds")),
            )
        ).rowcount
    return marked


def set_holder(conn: Connection, audit_id: int, holder: str) -> None:
    """Record on audit row ``audit_id`` who holds the single-runner lock for its work."""
    conn.execute(update(RetentionRun).where(RetentionRun.id == audit_id).values(holder=holder))


def record(
    sessions: sessionmaker[Session],
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    mode: RetentionMode | str,
    outcome: RetentionOutcome | str,
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
    session: Session,
    *,
    limit: int,
    cursor: str | None,
    mode: str | None = None,
    outcome: str | None = None,
) -> tuple[list[RetentionRun], str | None]:
    """One page of the audit log, newest first; ``mode`` and ``outcome`` filter it."""
    stmt = select(RetentionRun)
    if mode:
        stmt = stmt.where(RetentionRun.mode == mode)
    if outcome:
        stmt = stmt.where(RetentionRun.outcome == outcome)
    return paginate(
        session=session,
        stmt=stmt,
        keyset=AUDIT_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"mode": mode, "outcome": outcome},
    )


def get_audit(session: Session, run_id: int) -> RetentionRun:
    """One row of the audit log.

    Raises:
        NotFoundError: There is no row ``run_id``.
    """
    row = session.get(RetentionRun, run_id) if 1 <= run_id <= MAX_INT64 else None
    if row is None:
        raise NotFoundError(f"No retention run {run_id}.")
    return row
