"""Retention as a whole: preview a policy, then execute the very plan that was previewed.

This is what the CLI, the API and the scheduler call. Every preview and every execution writes
an audit row; an execution needs a preview to confirm (its ``plan_id``, single-use and
short-lived: see :mod:`.plans`), re-checks the counts against it, archives to the configured
store, and records what it did. The audit row names the lock holder and the archive as soon as
each is known, and is closed while the lock is still held, so a runner killed at any point
leaves a row the next runner can mark ``interrupted``, pointing at its archive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionTrigger
from taskledger.errors import SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive.stores import ArchiveTarget, open_store
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.audit import AuditHandle, close_audit, note_archive, open_audit, record
from taskledger.retention.execute.executor import Executor, Progress, RuleOutcome
from taskledger.retention.plan.plans import (
    ConfirmedPlan,
    RecordedPreview,
    check_not_stale,
    check_usable,
    claim_plan,
    record_refusal,
)
from taskledger.retention.plan.preview import PlanPreview, make_plan, preview
from taskledger.retention.policy.rules import Policy
from taskledger.retention.policy.tables import get_table
from taskledger.retention.safeguards.guard import check_caps
from taskledger.retention.safeguards.lock import holder_identity, runner_lock
from taskledger.settings import DEFAULT_GZIP_LEVEL, DEFAULT_PLAN_TTL
from taskledger.store.engine import read_only
from taskledger.store.migrate import current_revision
from taskledger.store.types import as_utc, utcnow

__all__ = ["ExecutionReport", "execute_policy", "preview_policy", "table_rows"]


@dataclass
class ExecutionReport:
    """What an execution did; also the body of its audit row."""

    retention_run_id: int
    plan_id: str
    policy: str
    outcome: str
    archive_uri: str | None
    started_at: datetime
    finished_at: datetime | None = None
    rules: list[RuleOutcome] = field(default_factory=list)

    @property
    def affected(self) -> int:
        return sum(r.affected for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "retention_run_id": self.retention_run_id,
            "plan_id": self.plan_id,
            "policy": self.policy,
            "outcome": self.outcome,
            "archive_uri": self.archive_uri,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "rules": [r.to_dict() for r in self.rules],
        }


def preview_policy(
    sessions: sessionmaker[Session],
    policy: Policy,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    now: datetime | None = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> RecordedPreview:
    """Preview ``policy`` (changes nothing) and record the preview in the audit log; archive
    sizes are estimated at ``gzip_level``, the level the execution would archive at."""
    moment = as_utc(now) if now else utcnow()
    with read_only(sessions).begin() as session:
        result = preview(session, make_plan(session, policy, moment), gzip_level=gzip_level)
    handle = open_audit(
        sessions,
        actor=actor,
        trigger=trigger,
        mode=RetentionMode.PREVIEW,
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=result.plan_id,
    )
    close_audit(sessions, handle, outcome="ok", counts=result.to_dict())
    return RecordedPreview(
        plan=result.plan,
        rules=result.rules,
        retention_run_id=handle.id,
        recorded_at=handle.started_at,
    )


def execute_policy(
    engine: Engine,
    sessions: sessionmaker[Session],
    policy: Policy,
    confirmed: ConfirmedPlan,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    archive: ArchiveTarget,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
    reason: str | None = None,
    force: bool = False,
    dry_run_only: bool = False,
    plan_ttl: int = DEFAULT_PLAN_TTL,
) -> ExecutionReport:
    """Execute the plan that ``confirmed`` names, at the moment it was previewed.

    Under the single-runner lock, the counts are taken again first: a plan whose counts grew by
    more than 10 % is refused as stale. Rows that came of age since the preview are left for the
    next run, so the execution does what was confirmed. Then the caps apply
    (``max_rows_per_run``, ``max_table_fraction`` unless ``force`` with a ``reason``), and the
    plan is claimed: a plan runs once, within ``plan_ttl`` seconds of its preview. Every refusal
    is recorded in the audit row. With ``dry_run_only`` the execution becomes an audited
    preview, which claims nothing (a spent or expired plan is still refused).
    """
    if dry_run_only:
        return _dry_run(
            sessions,
            policy,
            confirmed,
            actor=actor,
            trigger=trigger,
            gzip_level=archive.gzip_level,
            plan_ttl=plan_ttl,
        )
    handle = open_audit(
        sessions,
        actor=actor,
        trigger=trigger,
        mode=RetentionMode.EXECUTE,
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=confirmed.plan_id,
        reason=reason,
    )
    report = ExecutionReport(
        retention_run_id=handle.id,
        plan_id=confirmed.plan_id,
        policy=policy.name,
        outcome="running",
        archive_uri=None,
        started_at=handle.started_at,
    )
    started = time.perf_counter()
    closed = False
    try:
        with runner_lock(engine, holder=f"{actor} ({holder_identity()})", audit_id=handle.id):
            # Closed under the lock: a runner killed after it let go of the lock would leave
            # a row no later runner can tell from a live one.
            try:
                with read_only(sessions).begin() as session:
                    plan = make_plan(session, policy, confirmed.now)
                    current = preview(session, plan, gzip_level=archive.gzip_level)
                    rows = table_rows(session, {r.table for r in current.rules})
                check_not_stale(confirmed, current)
                check_caps(policy, current, rows, force=force, reason=reason)
                claim_plan(engine, confirmed, handle.id, ttl=plan_ttl)
                report.rules = _execute(
                    engine, sessions, policy, current, handle, archive, metrics, progress, report
                )
            except BaseException as exc:
                closed = True
                _close_for(sessions, handle, report, exc)
                raise
            closed = True
            _close(sessions, handle, report, "ok")
    except BaseException as exc:
        if not closed:  # the lock itself refused or failed
            _close_for(sessions, handle, report, exc)
        raise
    if metrics is not None:
        metrics.retention_duration.observe(time.perf_counter() - started)
        metrics.retention_last_success.set(time.time())
    return report


def _close_for(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    report: ExecutionReport,
    exc: BaseException,
) -> None:
    if isinstance(exc, SafeguardRefused):
        _close(sessions, handle, report, "refused", error=str(exc.detail))
    else:
        _close(sessions, handle, report, "failed", error=f"{type(exc).__name__}: {exc}")


def _execute(
    engine: Engine,
    sessions: sessionmaker[Session],
    policy: Policy,
    current: PlanPreview,
    handle: AuditHandle,
    target: ArchiveTarget,
    metrics: Metrics | None,
    progress: Progress | None,
    report: ExecutionReport,
) -> list[RuleOutcome]:
    writer = _writer(engine, policy, current, handle, target)
    if writer is not None:
        note_archive(sessions, handle, writer.uri)
    try:
        executor = Executor(
            engine, writer=writer, now=current.plan.now, metrics=metrics, progress=progress
        )
        try:
            outcomes = executor.run(
                current.plan, expected={r.name: r.matched for r in current.rules}
            )
            if writer is not None:
                writer.finish()
            return outcomes
        finally:
            # Also when the run stops part-way: the audit row shows what was done, and where
            # the archive of it is (an unfinished archive still lists every part written).
            report.rules = executor.outcomes
            if writer is not None and writer.manifest.files:
                report.archive_uri = writer.uri
    finally:
        if writer is not None:
            writer.store.close()


def table_rows(session: Session, tables: set[str]) -> dict[str, int]:
    """Exact row counts of ``tables`` (for the table-fraction guard)."""
    counts = {}
    for name in sorted(tables):
        model = get_table(name).model
        counts[name] = int(session.scalar(select(func.count()).select_from(model)) or 0)
    return counts


def _dry_run(
    sessions: sessionmaker[Session],
    policy: Policy,
    confirmed: ConfirmedPlan,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    gzip_level: int,
    plan_ttl: int,
) -> ExecutionReport:
    """TASKLEDGER_RETENTION_DRY_RUN_ONLY: the execution is previewed and audited, nothing else.
    The plan is not claimed (nothing is done with it), but a spent or expired one is refused."""
    try:
        check_usable(sessions, confirmed, ttl=plan_ttl)
    except SafeguardRefused as exc:
        record_refusal(sessions, exc, policy, confirmed.plan_id, actor=actor, trigger=trigger)
        raise
    with read_only(sessions).begin() as session:
        current = preview(session, make_plan(session, policy, confirmed.now), gzip_level=gzip_level)
    handle = record(
        sessions,
        actor=actor,
        trigger=trigger,
        mode=RetentionMode.PREVIEW,
        outcome="dry-run",
        counts=current.to_dict(),
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=confirmed.plan_id,
    )
    rules = [
        RuleOutcome(
            name=r.name, table=r.table, action=r.action, archived=r.archive, matched=r.matched
        )
        for r in current.rules
    ]
    return ExecutionReport(
        retention_run_id=handle.id,
        plan_id=confirmed.plan_id,
        policy=policy.name,
        outcome="dry-run",
        archive_uri=None,
        started_at=handle.started_at,
        finished_at=utcnow(),
        rules=rules,
    )


def _writer(
    engine: Engine,
    policy: Policy,
    current: PlanPreview,
    handle: AuditHandle,
    target: ArchiveTarget,
) -> ArchiveWriter | None:
    if not any(r.archive and r.matched for r in current.rules):
        return None
    return ArchiveWriter(
        open_store(target.url, s3_endpoint_url=target.s3_endpoint_url),
        run_id=handle.archive_run_id,
        started_at=handle.started_at,
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        schema_revision=current_revision(engine),
        compresslevel=target.gzip_level,
    )


def _close(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    report: ExecutionReport,
    outcome: str,
    *,
    error: str | None = None,
) -> None:
    report.outcome = outcome
    report.finished_at = utcnow()
    counts = {"plan_id": report.plan_id, "rules": [r.to_dict() for r in report.rules]}
    close_audit(
        sessions,
        handle,
        outcome=outcome,
        counts=counts,
        archive_uri=report.archive_uri,
        error=error,
    )
