"""Retention as a whole: preview a policy, then execute the very plan that was previewed.

This is what the CLI, the API and the scheduler call, each with one
:class:`~taskledger.retention.execute.request.RetentionRequest`. Every preview and every
execution writes an audit row; an execution needs a preview to confirm (its ``plan_id``,
single-use and short-lived: see :mod:`taskledger.retention.plan.plans`), re-checks the counts
against it, archives to the request's target, and records what it did. The audit row names
the lock holder and the archive as soon as each is known, and is closed while the lock is still
held, so a runner killed at any point leaves a row the next runner can mark ``interrupted``,
pointing at its archive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionOutcome
from taskledger.errors import SafeguardRefused
from taskledger.retention.archive.stores import open_store
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.audit import AuditHandle, close_audit, note_archive, open_audit, record
from taskledger.retention.execute.executor import Executor, RuleOutcome
from taskledger.retention.execute.request import RetentionRequest
from taskledger.retention.plan.plans import (
    ConfirmedPlan,
    RecordedPreview,
    check_not_stale,
    check_usable,
    claim_plan,
    confirm_plan,
    record_refusal,
)
from taskledger.retention.plan.preview import PlanPreview, preview_at
from taskledger.retention.policy.tables import get_table
from taskledger.retention.safeguards.guard import check_caps, fraction_cap_lifted
from taskledger.retention.safeguards.lock import holder_identity, runner_lock
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
    outcome: RetentionOutcome
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
    sessions: sessionmaker[Session], request: RetentionRequest, *, now: datetime | None = None
) -> RecordedPreview:
    """Preview the request's policy at ``now`` (default: now) and record the preview in the
    audit log; changes nothing else. Archive sizes are estimated at the request's gzip level,
    the level the execution would archive at."""
    moment = as_utc(now) if now else utcnow()
    with read_only(sessions).begin() as session:
        result = preview_at(session, request.policy, moment, gzip_level=request.archive.gzip_level)
    handle = record(
        sessions,
        actor=request.actor,
        trigger=request.trigger,
        mode=RetentionMode.PREVIEW,
        outcome=RetentionOutcome.OK,
        counts=result.to_dict(),
        policy_name=request.policy.name,
        policy_hash=request.policy.policy_hash,
        plan_id=result.plan_id,
    )
    return RecordedPreview(
        plan=result.plan,
        rules=result.rules,
        retention_run_id=handle.id,
        recorded_at=handle.started_at,
    )


def execute_policy(
    engine: Engine, sessions: sessionmaker[Session], request: RetentionRequest
) -> ExecutionReport:
    """Execute the plan the request's safeguards name, at the moment it was previewed.

    Under the single-runner lock, in this order, each once: **plan** (the counts are taken
    again at the preview's moment; rows that came of age since are left for the next run, so
    the execution does what was confirmed), **guard** (a plan whose counts grew by more than
    10 % is refused as stale; then the caps: ``max_rows_per_run``, ``max_table_fraction``
    unless ``force`` with a ``reason``; then the plan is claimed: a plan runs once, within the
    plan TTL of its preview), **execute** (batch by batch, archiving first), **audit** (the
    row opened before the lock is closed with the outcome). Every refusal is recorded in the
    audit row. With ``dry_run_only`` the execution becomes an audited preview, which claims
    nothing (a spent or expired plan is still refused).
    """
    confirmed = _confirmed(sessions, request)
    if request.safeguards.dry_run_only:
        return _dry_run(sessions, request, confirmed)
    policy = request.policy
    handle = open_audit(
        sessions,
        actor=request.actor,
        trigger=request.trigger,
        mode=RetentionMode.EXECUTE,
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=confirmed.plan_id,
        reason=request.reason,
    )
    report = ExecutionReport(
        retention_run_id=handle.id,
        plan_id=confirmed.plan_id,
        policy=policy.name,
        outcome=RetentionOutcome.RUNNING,
        archive_uri=None,
        started_at=handle.started_at,
    )
    started = time.perf_counter()
    holder = f"{request.actor} ({holder_identity()})"
    try:
        with runner_lock(engine, holder=holder, audit_id=handle.id):
            failure: BaseException | None = None
            try:
                current, rows = _plan(sessions, request, confirmed)
                _guard(engine, request, confirmed, current, rows, handle)
                _execute(engine, sessions, request, current, handle, report)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                # The audit, under the lock: a runner killed after it let go of the lock would
                # leave a row no later runner can tell from a live one.
                _close(sessions, handle, report, failure)
    except BaseException as exc:
        if report.finished_at is None:  # the lock itself refused or failed: the row is open
            _close(sessions, handle, report, exc)
        raise
    if request.metrics is not None:
        request.metrics.retention_duration.observe(time.perf_counter() - started)
        request.metrics.retention_last_success.set(time.time())
    return report


def _confirmed(sessions: sessionmaker[Session], request: RetentionRequest) -> ConfirmedPlan:
    """The plan the request consumes; one named by its ``plan_id`` is looked up in the audit
    log, and a refusal there is recorded."""
    plan = request.safeguards.plan
    if isinstance(plan, ConfirmedPlan):
        return plan
    if plan is None:
        raise ValueError("an execution consumes a previewed plan: set safeguards.plan")
    return confirm_plan(
        sessions,
        plan,
        request.policy,
        actor=request.actor,
        trigger=request.trigger,
        ttl=request.safeguards.plan_ttl,
    )


def _plan(
    sessions: sessionmaker[Session], request: RetentionRequest, confirmed: ConfirmedPlan
) -> tuple[PlanPreview, dict[str, int]]:
    """The confirmed plan counted again at its moment, with the rows of its tables for the
    table-fraction cap (none when the request lifts that cap: counting a whole table is not
    free)."""
    with read_only(sessions).begin() as session:
        current = preview_at(session, request.policy, confirmed.now, details=False)
        if fraction_cap_lifted(force=request.safeguards.force, reason=request.reason):
            return current, {}
        return current, table_rows(session, {r.table for r in current.rules})


def _guard(
    engine: Engine,
    request: RetentionRequest,
    confirmed: ConfirmedPlan,
    current: PlanPreview,
    rows: dict[str, int],
    handle: AuditHandle,
) -> None:
    """Refuse a stale plan or one over the caps; otherwise claim it (from here it is spent)."""
    check_not_stale(confirmed, current)
    check_caps(request.policy, current, rows, force=request.safeguards.force, reason=request.reason)
    claim_plan(engine, confirmed, handle.id, ttl=request.safeguards.plan_ttl)


def _execute(
    engine: Engine,
    sessions: sessionmaker[Session],
    request: RetentionRequest,
    current: PlanPreview,
    handle: AuditHandle,
    report: ExecutionReport,
) -> None:
    writer = _writer(engine, request, current, handle)
    if writer is not None:
        note_archive(sessions, handle, writer.uri)
    try:
        executor = Executor(
            engine,
            writer=writer,
            now=current.plan.now,
            metrics=request.metrics,
            progress=request.progress,
        )
        try:
            executor.run(current.plan, expected={r.name: r.matched for r in current.rules})
            if writer is not None:
                writer.finish()
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
    sessions: sessionmaker[Session], request: RetentionRequest, confirmed: ConfirmedPlan
) -> ExecutionReport:
    """TASKLEDGER_RETENTION_DRY_RUN_ONLY: the execution is previewed and audited, nothing else.
    The plan is not claimed (nothing is done with it), but a spent or expired one is refused."""
    policy = request.policy
    try:
        check_usable(sessions, confirmed, ttl=request.safeguards.plan_ttl)
    except SafeguardRefused as exc:
        record_refusal(
            sessions, exc, policy, confirmed.plan_id, actor=request.actor, trigger=request.trigger
        )
        raise
    with read_only(sessions).begin() as session:
        current = preview_at(session, policy, confirmed.now, gzip_level=request.archive.gzip_level)
    handle = record(
        sessions,
        actor=request.actor,
        trigger=request.trigger,
        mode=RetentionMode.PREVIEW,
        outcome=RetentionOutcome.DRY_RUN,
        counts=current.to_dict(),
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=confirmed.plan_id,
    )
    rules = [
        RuleOutcome(
            name=r.name, table=r.table, action=r.action, archive=r.archive, matched=r.matched
        )
        for r in current.rules
    ]
    return ExecutionReport(
        retention_run_id=handle.id,
        plan_id=confirmed.plan_id,
        policy=policy.name,
        outcome=RetentionOutcome.DRY_RUN,
        archive_uri=None,
        started_at=handle.started_at,
        finished_at=utcnow(),
        rules=rules,
    )


def _writer(
    engine: Engine, request: RetentionRequest, current: PlanPreview, handle: AuditHandle
) -> ArchiveWriter | None:
    if not any(r.archive and r.matched for r in current.rules):
        return None
    target = request.archive
    return ArchiveWriter(
        open_store(target.url, s3_endpoint_url=target.s3_endpoint_url),
        run_id=handle.archive_run_id,
        started_at=handle.started_at,
        policy_name=request.policy.name,
        policy_hash=request.policy.policy_hash,
        schema_revision=current_revision(engine),
        compresslevel=target.gzip_level,
    )


def _close(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    report: ExecutionReport,
    failure: BaseException | None = None,
) -> None:
    """Close the execution's audit row: ``ok``, or ``refused`` by a safeguard, or ``failed``."""
    if failure is None:
        outcome, error = RetentionOutcome.OK, None
    elif isinstance(failure, SafeguardRefused):
        outcome, error = RetentionOutcome.REFUSED, str(failure.detail)
    else:
        outcome, error = RetentionOutcome.FAILED, f"{type(failure).__name__}: {failure}"
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
