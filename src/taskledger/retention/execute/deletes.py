"""Deletes outside policy executions go through the same machinery as retention: a gate (the
spike guard, or the caps), holds, then the executor, which archives every row (and what the
database would take with it) before deleting, and an audit row that names its archive from the
moment the archive is opened. Nothing leaves the database by a side door.

- API deletes of records (:func:`delete_records`): refused with 429 when the spike window is full.
- The seed endpoint ``DELETE /agents/tasks/before`` and ``taskledger runs prune``
  (:func:`prune_runs_before`): an admin-confirmed retention run, bounded by the caps of the policy
  in force, counted in the spike window (alerting when it goes over) but never refused by it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, false, func, not_, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionOutcome, RetentionTrigger
from taskledger.errors import ConflictError, SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive.stores import ArchiveTarget, open_store
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.audit import close_audit, note_archive, open_audit, record
from taskledger.retention.execute.executor import Executor, Progress
from taskledger.retention.execute.request import RetentionRequest
from taskledger.retention.plan.holds import active_holds
from taskledger.retention.plan.planner import Plan, RuleSelection
from taskledger.retention.policy.rules import Policy, Rule
from taskledger.retention.policy.tables import get_table
from taskledger.retention.safeguards.guard import SpikeGuard, check_prune_caps
from taskledger.store.engine import read_only
from taskledger.store.migrate import current_revision
from taskledger.store.models import Run
from taskledger.store.types import utcnow

#: The name the audit log gives the seed endpoint's prune (and ``taskledger runs prune``).
PRUNE_NAME = "agents-tasks-before"


@dataclass
class DeleteReport:
    deleted: int
    archive_uri: str | None
    retention_run_id: int
    #: ``TASKLEDGER_RETENTION_DRY_RUN_ONLY`` made it a preview: ``would_delete`` rows, none gone.
    dry_run: bool = False
    would_delete: int = 0


def _selection(
    table: str, condition: ColumnElement[bool], name: str, cutoff: datetime | None
) -> RuleSelection:
    entry = get_table(table)
    rule = Rule(name=name, table=table, older_than=timedelta(0), action="delete")
    return RuleSelection(
        rule=rule,
        table=entry,
        cutoff=cutoff or utcnow(),
        whole_partitions=cutoff is not None,
        batch_size=1000,
        candidates=condition,
        eligible=condition,
        held=false(),
        protected=None,
    )


def archived_delete(
    engine: Engine,
    sessions: sessionmaker[Session],
    *,
    table: str,
    condition: ColumnElement[bool],
    expected: int,
    name: str,
    actor: str,
    trigger: RetentionTrigger,
    gate: Callable[[], None],
    target: ArchiveTarget,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
    reason: str | None = None,
    audit_extra: dict[str, Any] | None = None,
    cutoff: datetime | None = None,
) -> DeleteReport:
    """Delete the rows of ``table`` matching ``condition`` (already excluding held rows), once
    ``gate`` (the spike guard, the caps) lets the ``expected`` of them through, archiving
    everything first and auditing it all; a refusal by ``gate`` is audited as ``refused``.

    ``cutoff``: ``condition`` takes only rows older than it (a prune by age), so partitions of
    runs it covers whole may be dropped whole; a delete of given records never looks for them."""
    handle = open_audit(
        sessions,
        actor=actor,
        trigger=trigger,
        mode=RetentionMode.EXECUTE,
        policy_name=name,
        reason=reason,
    )
    counts: dict[str, Any] = {**(audit_extra or {}), "expected": expected}
    writer: ArchiveWriter | None = None
    try:
        gate()
        now = utcnow()
        selection = _selection(table, condition, name, cutoff)
        if expected:
            writer = ArchiveWriter(
                open_store(target.url, s3_endpoint_url=target.s3_endpoint_url),
                run_id=handle.archive_run_id,
                started_at=handle.started_at,
                policy_name=name,
                policy_hash=None,
                schema_revision=current_revision(engine),
                compresslevel=target.gzip_level,
            )
            note_archive(sessions, handle, writer.uri)
        try:
            plan = Plan(policy=Policy(name=name), now=now, selections=(selection,))
            executor = Executor(engine, writer=writer, now=now, metrics=metrics, progress=progress)
            outcome = executor.run(plan)[0]
            archive_uri = None
            if writer is not None:
                writer.finish()
                archive_uri = writer.uri if writer.manifest.files else None
        finally:
            if writer is not None:
                writer.store.close()
    except SafeguardRefused as exc:
        close_audit(
            sessions, handle, outcome=RetentionOutcome.REFUSED, counts=counts, error=str(exc.detail)
        )
        raise
    except Exception as exc:
        # The archive stays named: it lists every part written before the failure.
        uri = writer.uri if writer is not None and writer.manifest.files else None
        close_audit(
            sessions,
            handle,
            outcome=RetentionOutcome.FAILED,
            counts=counts,
            archive_uri=uri,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise
    counts["rules"] = [outcome.to_dict()]
    close_audit(
        sessions, handle, outcome=RetentionOutcome.OK, counts=counts, archive_uri=archive_uri
    )
    return DeleteReport(outcome.affected, archive_uri, handle.id)


def delete_records(
    engine: Engine,
    sessions: sessionmaker[Session],
    *,
    table: str,
    keys: Sequence[Any],
    actor: str,
    guard: SpikeGuard,
    target: ArchiveTarget,
    metrics: Metrics | None = None,
) -> DeleteReport:
    """Delete specific records through the API: refused (409) when any is under a hold."""
    entry = get_table(table)
    key = entry.model.__table__.c[entry.key_column]
    with read_only(sessions)() as session:
        held = active_holds(session)
        if held:
            protected = session.scalars(
                select(key).where(key.in_(keys), held.held(table) | held.held_children(table))
            ).all()
            if protected:
                raise ConflictError(
                    f"{table} {', '.join(str(k) for k in protected)} is under a retention hold."
                )
    return archived_delete(
        engine,
        sessions,
        table=table,
        condition=key.in_(keys),
        expected=len(keys),
        name=f"api-delete-{table}",
        actor=actor,
        trigger=RetentionTrigger.API,
        gate=lambda: (
            guard.admit(len(keys), source=f"api-delete-{table}", actor=actor) if keys else None
        ),
        target=target,
        metrics=metrics,
        audit_extra={"keys": [str(k) if isinstance(k, uuid.UUID) else k for k in keys]},
    )


@dataclass(frozen=True)
class PrunePreview:
    """What a prune of the runs started before ``cutoff`` would delete."""

    cutoff: datetime
    matched: int  # unheld runs started before the cutoff
    held: int  # runs started before the cutoff that a hold protects (kept)
    table_rows: int  # every run, for max_table_fraction
    last_id: int | None  # the newest run counted: the prune goes no further

    def check_caps(self, policy: Policy, *, force: bool, reason: str | None) -> None:
        """Refuse this prune over a cap of ``policy`` (see :func:`check_prune_caps`)."""
        check_prune_caps(
            policy,
            rows=self.matched,
            table_rows=self.table_rows,
            force=force,
            reason=reason,
            command=prune_command(self.cutoff),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "matched": self.matched,
            "held": self.held,
            "table_rows": self.table_rows,
        }


def preview_prune(sessions: sessionmaker[Session], cutoff: datetime) -> PrunePreview:
    """Count what :func:`prune_runs_before` would delete; changes nothing."""
    with read_only(sessions).begin() as session:
        held = active_holds(session)
        old = Run.started_at < cutoff
        is_held = held.held("runs")
        matched, last_id = session.execute(
            select(func.count(), func.max(Run.id)).where(old, not_(is_held))
        ).one()
        held_rows = session.scalar(select(func.count()).select_from(Run).where(old, is_held))
        total = session.scalar(select(func.count()).select_from(Run))
    return PrunePreview(cutoff, int(matched), int(held_rows or 0), int(total or 0), last_id)


_ISO_WITH_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})"
)


def parse_cutoff(value: object, *, now: datetime | None = None) -> datetime:
    """A prune's cutoff: an ISO 8601 timestamp with an explicit offset or ``Z``, in UTC.

    Deleting is too consequential to guess: a bare number (Unix time?), a date without a time, a
    timestamp without an offset (whose time zone?), one that leaves the representable range once
    its offset is applied, and one in the future are all refused.

    Raises:
        ValueError: Why ``value`` is not a usable cutoff.
    """
    if not isinstance(value, str) or not _ISO_WITH_OFFSET.fullmatch(value.strip()):
        raise ValueError(
            "must be an ISO 8601 timestamp with an offset or Z, e.g. 2025-07-01T00:00:00Z"
        )
    try:
        cutoff = datetime.fromisoformat(value.strip()).astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once its offset is applied") from None
    except ValueError as exc:
        raise ValueError(f"is not a valid timestamp: {exc}") from None
    if cutoff > (now or utcnow()):
        raise ValueError("must not be in the future")
    return cutoff


def prune_command(cutoff: datetime) -> str:
    """The command line that can force a prune the caps refuse."""
    stamp = cutoff.isoformat().replace("+00:00", "Z")
    return f"taskledger runs prune --before {stamp} --force --reason TEXT"


def prune_runs_before(
    engine: Engine, sessions: sessionmaker[Session], request: RetentionRequest, *, cutoff: datetime
) -> DeleteReport:
    """Delete every unheld run (of any project) started before ``cutoff``, as an
    admin-confirmed retention run: within the caps of the request's policy (``force`` with a
    ``reason`` lifts them), counted in the request's spike window (alerting when it goes over)
    but never refused by it, archived first, audited. In dry-run-only mode (the request's
    safeguards) nothing is deleted: the prune is audited as a ``dry-run`` preview.

    The runs counted are the ones deleted: rows written after the count (whose keys are
    higher, as keys are never reused) are left for the next prune, so the caps checked hold.

    Raises:
        CapRefused: Over ``max_rows_per_run`` or ``max_table_fraction`` (audited ``refused``).
    """
    policy, safeguards, guard = request.policy, request.safeguards, request.safeguards.spike_guard
    if guard is None:
        raise ValueError("a prune is counted in the spike window: set safeguards.spike_guard")
    counted = preview_prune(sessions, cutoff)
    extra = {
        **counted.to_dict(),
        "policy": policy.name,
        "max_rows_per_run": policy.max_rows_per_run,
        "max_table_fraction": policy.max_table_fraction,
        "forced": safeguards.force,
    }
    if safeguards.dry_run_only:
        # As every execution in dry-run-only mode: an audited preview that changes nothing.
        handle = record(
            sessions,
            actor=request.actor,
            trigger=request.trigger,
            mode=RetentionMode.EXECUTE,
            outcome=RetentionOutcome.DRY_RUN,
            counts={**extra, "expected": counted.matched},
            policy_name=PRUNE_NAME,
            reason=request.reason,
        )
        return DeleteReport(
            deleted=0,
            archive_uri=None,
            retention_run_id=handle.id,
            dry_run=True,
            would_delete=counted.matched,
        )
    with read_only(sessions)() as session:
        held = active_holds(session)
    condition = and_(Run.started_at < cutoff, not_(held.held("runs")))
    if counted.last_id is not None:
        condition = and_(condition, Run.id <= counted.last_id)

    def gate() -> None:
        counted.check_caps(policy, force=safeguards.force, reason=request.reason)
        if counted.matched:
            guard.record(counted.matched, source=PRUNE_NAME, actor=request.actor)

    return archived_delete(
        engine,
        sessions,
        table="runs",
        condition=condition,
        expected=counted.matched,
        name=PRUNE_NAME,
        actor=request.actor,
        trigger=request.trigger,
        gate=gate,
        target=request.archive,
        metrics=request.metrics,
        progress=request.progress,
        reason=request.reason,
        audit_extra=extra,
        cutoff=cutoff,
    )
