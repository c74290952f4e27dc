"""Retention as a whole: preview a policy, then execute the very plan that was previewed.

This is what the CLI, the API and the scheduler call. Every preview and every execution writes
an audit row; an execution needs a preview to confirm (its ``plan_id``), re-checks the counts
against it, archives to the configured store, and records what it did.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionTrigger
from taskledger.errors import ConflictError, SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive import ArchiveWriter
from taskledger.retention.audit import AuditHandle, close_audit, open_audit, record
from taskledger.retention.executor import Executor, Progress, RuleOutcome
from taskledger.retention.guard import check_caps
from taskledger.retention.holds import active_holds
from taskledger.retention.lock import holder_identity, runner_lock
from taskledger.retention.planner import Plan, PlanPreview, build_plan, preview, resolve_projects
from taskledger.retention.policy import Policy
from taskledger.retention.stores import ArchiveTarget, open_store
from taskledger.retention.tables import get_table
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.engine import read_only
from taskledger.store.migrate import current_revision
from taskledger.store.models import RetentionRun
from taskledger.store.types import as_utc, utcnow

#: A plan is refused as stale when a rule's count grew by more than this since its preview.
STALE_GROWTH = 0.10


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


def make_plan(session: Session, policy: Policy, now: datetime) -> Plan:
    """The plan of ``policy`` at ``now``, with the holds and projects of this database."""
    bind = session.get_bind()
    return build_plan(
        policy,
        now,
        held=active_holds(session),
        project_ids=resolve_projects(session, policy),
        dialect=bind.dialect.name,
    )


def preview_policy(
    sessions: sessionmaker[Session],
    policy: Policy,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    now: datetime | None = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> PlanPreview:
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
    return result


@dataclass(frozen=True)
class ConfirmedPlan:
    """A previewed plan someone confirmed: its id, its moment and the counts they saw."""

    plan_id: str
    now: datetime
    matched: Mapping[str, int]

    @classmethod
    def from_preview(cls, previewed: PlanPreview) -> ConfirmedPlan:
        return cls(
            previewed.plan_id, previewed.plan.now, {r.name: r.matched for r in previewed.rules}
        )


def find_preview(sessions: sessionmaker[Session], plan_id: str, policy: Policy) -> ConfirmedPlan:
    """The preview that produced ``plan_id`` for this very policy, from the audit log.

    Raises:
        ConflictError: No such preview, or it was made with another policy.
    """
    with read_only(sessions)() as session:
        row = session.scalar(
            select(RetentionRun)
            .where(RetentionRun.plan_id == plan_id, RetentionRun.mode == RetentionMode.PREVIEW)
            .order_by(RetentionRun.id.desc())
            .limit(1)
        )
    if row is None or not isinstance(row.counts, Mapping):
        raise ConflictError(f"No preview has plan_id {plan_id!r}; preview the policy first.")
    if row.policy_hash != policy.policy_hash:
        raise ConflictError("The plan was previewed with another policy; preview it again.")
    counts = row.counts
    return ConfirmedPlan(
        plan_id=plan_id,
        now=as_utc(datetime.fromisoformat(str(counts["now"]))),
        matched={str(r["name"]): int(r["matched"]) for r in counts.get("rules", [])},
    )


def confirm_plan(
    sessions: sessionmaker[Session],
    plan_id: str,
    policy: Policy,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
) -> ConfirmedPlan:
    """:func:`find_preview`, with a refusal recorded in the audit log when it fails."""
    try:
        return find_preview(sessions, plan_id, policy)
    except ConflictError as exc:
        record(
            sessions,
            actor=actor,
            trigger=trigger,
            mode=RetentionMode.EXECUTE,
            outcome="refused",
            error=str(exc.detail),
            policy_name=policy.name,
            policy_hash=policy.policy_hash,
            plan_id=plan_id[:64],
        )
        raise


def check_not_stale(confirmed: ConfirmedPlan, current: PlanPreview) -> None:
    """Refuse when any rule would now take more than 10 % more rows than its preview showed."""
    before = confirmed.matched
    for rule in current.rules:
        allowed = before.get(rule.name, 0) * (1 + STALE_GROWTH)
        if rule.matched > allowed:
            raise SafeguardRefused(
                f"The plan is stale: rule {rule.name!r} now matches {rule.matched} rows, "
                f"{before.get(rule.name, 0)} when previewed. Preview again."
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
) -> ExecutionReport:
    """Execute the plan that ``confirmed`` names, at the moment it was previewed.

    The counts are taken again first: a plan whose counts grew by more than 10 % is refused as
    stale (the audit row records the refusal). Rows that came of age since the preview are left
    for the next run, so the execution does exactly what was confirmed. Then the caps
    (``max_rows_per_run``, ``max_table_fraction`` unless ``force`` with a ``reason``) and the
    single-runner lock apply. With ``dry_run_only`` the execution becomes an audited preview.
    """
    if dry_run_only:
        return _dry_run(
            sessions, policy, confirmed, actor=actor, trigger=trigger, gzip_level=archive.gzip_level
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
    try:
        with runner_lock(engine, holder=f"{actor} ({holder_identity()})"):
            with read_only(sessions).begin() as session:
                plan = make_plan(session, policy, confirmed.now)
                current = preview(session, plan, gzip_level=archive.gzip_level)
                rows = table_rows(session, {r.table for r in current.rules})
            check_not_stale(confirmed, current)
            check_caps(policy, current, rows, force=force, reason=reason)
            report.rules = _execute(
                engine,
                policy,
                current,
                handle,
                archive,
                metrics,
                progress,
                report,
            )
    except SafeguardRefused as exc:
        _close(sessions, handle, report, "refused", error=str(exc.detail))
        raise
    except Exception as exc:
        _close(sessions, handle, report, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _close(sessions, handle, report, "ok")
    if metrics is not None:
        metrics.retention_duration.observe(time.perf_counter() - started)
        metrics.retention_last_success.set(time.time())
    return report


def _execute(
    engine: Engine,
    policy: Policy,
    current: PlanPreview,
    handle: AuditHandle,
    target: ArchiveTarget,
    metrics: Metrics | None,
    progress: Progress | None,
    report: ExecutionReport,
) -> list[RuleOutcome]:
    writer = _writer(engine, policy, current, handle, target)
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
) -> ExecutionReport:
    """TASKLEDGER_RETENTION_DRY_RUN_ONLY: the execution is previewed and audited, nothing else."""
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
