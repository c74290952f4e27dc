"""Runs: record, read, update with status rules, and list with filters and keyset paging.

The list sorts by ``(started_at DESC, id DESC)`` within a project, which the index
``(project_id, started_at DESC, id DESC)`` serves: a page costs the same at any depth.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskledger.enums import TERMINAL_STATUSES, Scope
from taskledger.errors import ConflictError, NotFoundError, ValidationFailed
from taskledger.schemas.runs import RunCreate, RunFilters, RunUpdate
from taskledger.services.access import Principal, get_project_for
from taskledger.services.pagination import Keyset, paginate
from taskledger.store.models import Agent, Project, Run, Task
from taskledger.store.types import as_utc, utcnow

RUNS_KEYSET = Keyset("runs", (Run.started_at, Run.id), descending=True)


def new_run_id() -> str:
    """A run id for callers that do not bring their own."""
    return uuid.uuid4().hex


def duration_ms(started_at: datetime, finished_at: datetime) -> int:
    """Milliseconds from start to finish, never negative."""
    return max(0, int((as_utc(finished_at) - as_utc(started_at)).total_seconds() * 1000))


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_conditions(project_id: uuid.UUID, filters: RunFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a run listing or export in one project."""
    conditions: list[ColumnElement[bool]] = [Run.project_id == project_id]
    if filters.since is not None:
        conditions.append(Run.started_at >= filters.since)
    if filters.until is not None:
        conditions.append(Run.started_at < filters.until)
    if filters.status:
        conditions.append(Run.status.in_([s.value for s in filters.status]))
    if filters.task:
        conditions.append(Run.task.in_(filters.task))
    if filters.agent:
        try:
            conditions.append(Run.agent_id == uuid.UUID(filters.agent))
        except ValueError:
            by_name = select(Agent.id).where(
                Agent.project_id == project_id, Agent.name == filters.agent
            )
            conditions.append(Run.agent_id.in_(by_name.scalar_subquery()))
    if filters.run_id:
        conditions.append(Run.run_id == filters.run_id)
    if filters.approval_state:
        conditions.append(Run.approval_state == filters.approval_state)
    if filters.q:
        pattern = _like_pattern(filters.q)
        conditions.append(
            or_(
                Run.task.ilike(pattern, escape="\\"),
                Run.log_excerpt.ilike(pattern, escape="\\"),
            )
        )
    return conditions


def filter_fingerprint_source(filters: RunFilters) -> dict[str, Any]:
    """The filters in the form cursors are bound to."""
    return filters.model_dump(mode="json")


def list_runs(
    *,
    session: Session,
    project: Project,
    filters: RunFilters,
    limit: int,
    cursor: str | None,
) -> tuple[list[Run], str | None]:
    """One page of the project's runs, newest first."""
    stmt: Select[Any] = select(Run).where(and_(*filter_conditions(project.id, filters)))
    return paginate(
        session=session,
        stmt=stmt,
        keyset=RUNS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"project": str(project.id), **filter_fingerprint_source(filters)},
    )


def check_references(
    *, session: Session, project_id: uuid.UUID, agent_ids: set[uuid.UUID], task_ids: set[uuid.UUID]
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The agent and task ids that are NOT in the project (two queries whatever the count)."""
    missing_agents: set[uuid.UUID] = set()
    missing_tasks: set[uuid.UUID] = set()
    if agent_ids:
        found = set(
            session.scalars(
                select(Agent.id).where(Agent.project_id == project_id, Agent.id.in_(agent_ids))
            )
        )
        missing_agents = agent_ids - found
    if task_ids:
        found = set(
            session.scalars(
                select(Task.id).where(Task.project_id == project_id, Task.id.in_(task_ids))
            )
        )
        missing_tasks = task_ids - found
    return missing_agents, missing_tasks


def check_finish(
    started_at: datetime, finished_at: datetime, *, loc: tuple[str | int, ...]
) -> None:
    """Refuse a run that would finish before it started (422 naming ``finished_at``)."""
    if as_utc(finished_at) < as_utc(started_at):
        raise ValidationFailed(
            f"finished_at ({as_utc(finished_at).isoformat()}) is before started_at "
            f"({as_utc(started_at).isoformat()}).",
            loc=(*loc, "finished_at"),
        )


def run_values(
    data: RunCreate, project_id: uuid.UUID, now: datetime, *, loc: tuple[str | int, ...] = ("body",)
) -> dict[str, Any]:
    """The column values of a new run, with defaults and the terminal-status timestamps.

    ``started_at`` defaults to now, or to ``finished_at`` when only that was sent and it is
    earlier (a run recorded after the fact); a run whose ``finished_at`` is before its explicit
    ``started_at`` is refused, with ``loc`` (where the run is in the request) in the error.
    """
    finished = data.finished_at
    if data.started_at is not None:
        started = data.started_at
        if finished is not None:
            check_finish(started, finished, loc=loc)
    else:
        started = min(now, finished) if finished is not None else now
    duration = data.duration_ms
    if data.status.value in TERMINAL_STATUSES and finished is None:
        finished = now
    if finished is not None and duration is None:
        duration = duration_ms(started, finished)
    return {
        "project_id": project_id,
        "agent_id": data.agent_id,
        "task_id": data.task_id,
        "task": data.task,
        "run_id": data.run_id or new_run_id(),
        "status": data.status.value,
        "started_at": started,
        "finished_at": finished,
        "duration_ms": duration,
        "inputs": data.inputs,
        "outputs_uri": data.outputs_uri,
        "log_excerpt": data.log_excerpt,
        "approval_state": data.approval_state,
        "approver": data.approver,
        "webhook_notified_at": data.webhook_notified_at,
        "idempotency_key": data.idempotency_key,
        "created_at": now,
        "updated_at": now,
    }


def _reference_errors(missing_agents: set[uuid.UUID], missing_tasks: set[uuid.UUID]) -> list[str]:
    errors = [f"agent_id {a} is not an agent of this project" for a in sorted(missing_agents)]
    errors += [f"task_id {t} is not a task of this project" for t in sorted(missing_tasks)]
    return errors


def find_by_idempotency_key(*, session: Session, project_id: uuid.UUID, key: str) -> Run | None:
    """The run recorded earlier with this idempotency key, if any."""
    return session.scalar(
        select(Run).where(Run.project_id == project_id, Run.idempotency_key == key)
    )


def create_run(
    *, session: Session, project: Project, data: RunCreate, idempotency_key: str | None = None
) -> tuple[Run, bool]:
    """Record a run; returns it and whether it is new.

    With an idempotency key (header or field), a repeat returns the original run instead of
    recording a duplicate, also when two identical requests race.
    """
    if data.project_id is not None and data.project_id != project.id:
        raise ValidationFailed("project_id does not match the project of the credentials.")
    if idempotency_key and data.idempotency_key and idempotency_key != data.idempotency_key:
        raise ValidationFailed("The Idempotency-Key header and idempotency_key field differ.")
    key = idempotency_key or data.idempotency_key
    if key:
        data = data.model_copy(update={"idempotency_key": key})
        existing = find_by_idempotency_key(session=session, project_id=project.id, key=key)
        if existing is not None:
            return existing, False
    missing = check_references(
        session=session,
        project_id=project.id,
        agent_ids={data.agent_id} if data.agent_id else set(),
        task_ids={data.task_id} if data.task_id else set(),
    )
    if errors := _reference_errors(*missing):
        raise NotFoundError("; ".join(errors))
    run = Run(**run_values(data, project.id, utcnow()))
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        if key is None:
            raise
        existing = find_by_idempotency_key(session=session, project_id=project.id, key=key)
        if existing is None:  # pragma: no cover - the conflict was something else
            raise
        return existing, False
    return run, True


def get_run(*, session: Session, principal: Principal, run_pk: int, need: Scope) -> Run:
    """The run whose key is ``run_pk``, if the caller may access it with ``need`` (404 when
    missing or not theirs)."""
    run = session.get(Run, run_pk)
    if run is None:
        raise NotFoundError("Run not found.")
    try:
        get_project_for(session=session, principal=principal, project_id=run.project_id, need=need)
    except NotFoundError:
        raise NotFoundError("Run not found.") from None
    return run


def update_run(*, session: Session, run: Run, changes: RunUpdate) -> Run:
    """Apply ``changes``: entering a terminal status sets ``finished_at`` and ``duration_ms``;
    leaving one is refused (409) unless ``reopen`` is set."""
    now = utcnow()
    fields = changes.model_dump(exclude_unset=True, exclude={"reopen", "status"})
    if changes.status is not None and changes.status.value != run.status:
        new = changes.status.value
        if run.status in TERMINAL_STATUSES and not changes.reopen:
            raise ConflictError(
                f'Run {run.id} is {run.status}; send "reopen": true to move it to {new}.'
            )
        if new in TERMINAL_STATUSES:
            run.finished_at = changes.finished_at or now
            run.duration_ms = (
                changes.duration_ms
                if changes.duration_ms is not None
                else duration_ms(run.started_at, run.finished_at)
            )
        elif run.status in TERMINAL_STATUSES:  # reopened
            run.finished_at = None
            run.duration_ms = None
        run.status = new
        fields.pop("finished_at", None)
        fields.pop("duration_ms", None)
    for name, value in fields.items():
        setattr(run, name, value)
    if changes.finished_at is not None:
        check_finish(run.started_at, changes.finished_at, loc=("body",))
    if run.finished_at is not None and run.duration_ms is None:
        run.duration_ms = duration_ms(run.started_at, run.finished_at)
    session.flush()
    return run
