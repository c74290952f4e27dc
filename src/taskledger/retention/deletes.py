"""Deletes outside retention runs (API deletes of records, the seed ``DELETE /agents/tasks/before``)
go through the same machinery as retention: the spike guard first, then holds, then the
executor, which archives every row (and what the database would take with it) before deleting,
and an audit row. Nothing leaves the database by a side door.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, false, func, not_, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionTrigger
from taskledger.errors import ConflictError, SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive import ArchiveWriter
from taskledger.retention.audit import close_audit, open_audit
from taskledger.retention.executor import Executor
from taskledger.retention.guard import SpikeGuard
from taskledger.retention.holds import active_holds
from taskledger.retention.planner import Plan, RuleSelection
from taskledger.retention.policy import Policy, Rule
from taskledger.retention.stores import ArchiveTarget, open_store
from taskledger.retention.tables import get_table
from taskledger.store.engine import read_only
from taskledger.store.migrate import current_revision
from taskledger.store.models import Run
from taskledger.store.types import utcnow


@dataclass
class DeleteReport:
    deleted: int
    archive_uri: str | None
    retention_run_id: int


def _selection(table: str, condition: ColumnElement[bool], name: str) -> RuleSelection:
    entry = get_table(table)
    rule = Rule(name=name, table=table, older_than=timedelta(0), action="delete")
    return RuleSelection(
        rule=rule,
        table=entry,
        cutoff=utcnow(),
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
    guard: SpikeGuard,
    target: ArchiveTarget,
    metrics: Metrics | None = None,
    audit_extra: dict[str, Any] | None = None,
) -> DeleteReport:
    """Delete the rows of ``table`` matching ``condition`` (already excluding held rows), after the
    spike guard admits ``expected`` of them, archiving everything first and auditing it all."""
    handle = open_audit(
        sessions, actor=actor, trigger=trigger, mode=RetentionMode.EXECUTE, policy_name=name
    )
    counts: dict[str, Any] = {**(audit_extra or {}), "expected": expected}
    try:
        if expected:
            guard.admit(expected, source=name, actor=actor)
        now = utcnow()
        selection = _selection(table, condition, name)
        writer = None
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
        try:
            plan = Plan(policy=Policy(name=name), now=now, selections=(selection,))
            outcome = Executor(engine, writer=writer, now=now, metrics=metrics).run(plan)[0]
            archive_uri = None
            if writer is not None:
                writer.finish()
                archive_uri = writer.uri if writer.manifest.files else None
        finally:
            if writer is not None:
                writer.store.close()
    except SafeguardRefused as exc:
        close_audit(sessions, handle, outcome="refused", counts=counts, error=str(exc.detail))
        raise
    except Exception as exc:
        close_audit(
            sessions, handle, outcome="failed", counts=counts, error=f"{type(exc).__name__}: {exc}"
        )
        raise
    counts["rules"] = [outcome.to_dict()]
    close_audit(sessions, handle, outcome="ok", counts=counts, archive_uri=archive_uri)
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
        guard=guard,
        target=target,
        metrics=metrics,
        audit_extra={"keys": [str(k) if isinstance(k, uuid.UUID) else k for k in keys]},
    )


def prune_runs_before(
    engine: Engine,
    sessions: sessionmaker[Session],
    *,
    cutoff: datetime,
    actor: str,
    guard: SpikeGuard,
    target: ArchiveTarget,
    metrics: Metrics | None = None,
) -> DeleteReport:
    """The seed endpoint: every unheld run (of any project) started before ``cutoff``."""
    with read_only(sessions)() as session:
        held = active_holds(session)
        condition = and_(Run.started_at < cutoff, not_(held.held("runs")))
        expected = int(session.scalar(select(func.count()).select_from(Run).where(condition)) or 0)
    return archived_delete(
        engine,
        sessions,
        table="runs",
        condition=condition,
        expected=expected,
        name="agents-tasks-before",
        actor=actor,
        trigger=RetentionTrigger.ENDPOINT,
        guard=guard,
        target=target,
        metrics=metrics,
        audit_extra={"cutoff": cutoff.isoformat()},
    )
