"""Seed-compatible run-history endpoints under ``/agents/tasks`` (same paths and shapes as the
original ``agents_tasks`` API), mapped onto the runs service. Callers authenticate with a
project API key (or a user token and ``project_id``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from taskledger.api.deps import (
    CursorQuery,
    LimitQuery,
    PrincipalDep,
    ProjectQuery,
    SessionDep,
    StateDep,
)
from taskledger.enums import RunStatus, Scope
from taskledger.schemas.base import ReadModel
from taskledger.schemas.runs import RunCreate, RunFilters, RunUpdate
from taskledger.services import run_export, runs
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.store.types import as_utc, utcnow

router = APIRouter(prefix="/agents/tasks", tags=["seed-compatible"])


class AgentTask(ReadModel):
    """A run in the field names of the original ``agents_tasks`` table."""

    id: int
    task: str
    run_id: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    inputs: Any | None
    outputs_uri: str | None
    log_excerpt: str | None
    approval_state: str | None
    approver: str | None
    webhook_notified_at: datetime | None


class AgentTaskPage(BaseModel):
    items: list[AgentTask]
    next_cursor: str | None


SinceQuery = Annotated[datetime | None, Query(description="Runs started at or after.")]
StatusQuery = Annotated[list[RunStatus], Query(description="Repeatable.")]
TaskQuery = Annotated[list[str], Query(description="Repeatable.")]


def _filters(since: datetime | None, status: list[RunStatus], task: list[str]) -> RunFilters:
    return RunFilters(since=as_utc(since) if since else None, status=status, task=task)


@router.post("/", response_model=AgentTask, status_code=status.HTTP_201_CREATED)
def create(
    body: RunCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> Any:
    """Record a run (``POST /api/v1/runs``)."""
    with session.begin():
        project = resolve_project(session, principal, body.project_id, Scope.WRITE)
        run, created = runs.create_run(session, project, body, idempotency_key=idempotency_key)
        payload = AgentTask.model_validate(run).model_dump(mode="json")
    if created:
        state.metrics.runs_recorded.inc()
    return JSONResponse(payload, status_code=201 if created else 200)


@router.patch("/{run_pk}", response_model=AgentTask)
def update(run_pk: int, body: RunUpdate, principal: PrincipalDep, session: SessionDep) -> AgentTask:
    """Update a run (``PATCH /api/v1/runs/{id}``)."""
    with session.begin():
        run = runs.get_run(session, principal, run_pk, Scope.WRITE)
        return AgentTask.model_validate(runs.update_run(session, run, body))


@router.get("/", response_model=list[AgentTask])
def list_recent(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
) -> list[AgentTask]:
    """The newest runs as a plain list (the legacy listing; use ``/paged`` to page)."""
    with session.begin():
        project = resolve_project(session, principal, project_id, Scope.READ)
        rows, _ = runs.list_runs(session, project, RunFilters(), limit=limit, cursor=None)
        return [AgentTask.model_validate(r) for r in rows]


@router.get("/paged", response_model=AgentTaskPage)
def paged(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    since: SinceQuery = None,
    cursor: CursorQuery = None,
    status: StatusQuery = [],  # noqa: B006
    task: TaskQuery = [],  # noqa: B006
) -> AgentTaskPage:
    """Keyset-paginated runs, newest first, filtered by since, status and task."""
    with session.begin():
        project = resolve_project(session, principal, project_id, Scope.READ)
        rows, next_cursor = runs.list_runs(
            session, project, _filters(since, status, task), limit=limit, cursor=cursor
        )
        return AgentTaskPage(
            items=[AgentTask.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/paged.csv", response_class=StreamingResponse)
def paged_csv(
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    project_id: ProjectQuery = None,
    limit: Annotated[int | None, Query(ge=1, description="Stop after this many rows.")] = None,
    since: SinceQuery = None,
    status: StatusQuery = [],  # noqa: B006
    task: TaskQuery = [],  # noqa: B006
) -> StreamingResponse:
    """The filtered runs as CSV, streamed with no row cap (``limit`` optional)."""
    with session.begin():
        project = resolve_project(session, principal, project_id, Scope.READ)
        pid = project.id
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        run_export.iter_csv(state.engine, pid, _filters(since, status, task), limit=limit),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agents-tasks-{stamp}.csv"'},
    )
