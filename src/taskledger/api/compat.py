"""Seed-compatible run-history endpoints under ``/agents/tasks`` (same paths and shapes as the
original ``agents_tasks`` API), mapped onto the runs service. Callers authenticate with a
project API key (or a user token and ``project_id``); the original API took none, so a 401 here
also says how to make a key and send it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator

from taskledger.api.deps import (
    CursorQuery,
    ExportLimit,
    IntId,
    LimitQuery,
    ProjectQuery,
    SessionDep,
    StateDep,
    admin_key_scheme,
    api_key_scheme,
    bearer_scheme,
    get_principal,
    streamed,
)
from taskledger.api.routing import LedgerRoute
from taskledger.api.runs import IdempotencyKey, record_run
from taskledger.enums import RetentionTrigger, RunStatus, Scope
from taskledger.errors import AuthenticationError, PermissionDenied
from taskledger.retention.execute.deletes import parse_cutoff, prune_runs_before
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.policy.load import load_policy
from taskledger.schemas.base import ErrorMessage, ReadModel
from taskledger.schemas.limits import UtcDatetime
from taskledger.schemas.runs import RunCreate, RunFilters, RunUpdate
from taskledger.services import run_export, runs
from taskledger.services.access import Principal, resolve_project
from taskledger.services.auth import principal_from_admin_key
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.store.types import utcnow

router = APIRouter(prefix="/agents/tasks", tags=["seed-compatible"], route_class=LedgerRoute)

#: What every 401 of these routes adds: clients of the original API sent no credentials at all.
KEY_GUIDANCE = (
    "The /agents/tasks endpoints need a project API key: send it in the X-API-Key header (or "
    "as Authorization: Bearer tl_...). Create one with `taskledger keys create --project NAME "
    "--name LABEL --scope write`; see docs/migrating.md."
)


def seed_principal(
    state: StateDep,
    background: BackgroundTasks,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    x_api_key: Annotated[str | None, Depends(api_key_scheme)],
    x_admin_key: Annotated[str | None, Depends(admin_key_scheme)],
) -> Principal:
    """Who is calling, exactly as on every other route; a 401 also says what to send."""
    try:
        return get_principal(state, background, bearer, x_api_key, x_admin_key)
    except AuthenticationError as exc:
        raise AuthenticationError(f"{exc.detail} {KEY_GUIDANCE}") from None


SeedPrincipalDep = Annotated[Principal, Depends(seed_principal)]


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


SinceQuery = Annotated[
    UtcDatetime | None, Query(description="Runs started at or after (UTC if no offset).")
]
StatusQuery = Annotated[list[RunStatus], Query(description="Repeatable.")]
TaskQuery = Annotated[list[str], Query(description="Repeatable.")]


def _filters(since: datetime | None, status: list[RunStatus], task: list[str]) -> RunFilters:
    return RunFilters(since=since, status=status, task=task)


@router.post("/", response_model=AgentTask, status_code=status.HTTP_201_CREATED)
def create(
    body: RunCreate,
    principal: SeedPrincipalDep,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Record a run (``POST /api/v1/runs``)."""
    return record_run(body, principal, session, state, idempotency_key, shape=AgentTask)


@router.patch("/{run_pk:int}", response_model=AgentTask)
def update(
    run_pk: IntId, body: RunUpdate, principal: SeedPrincipalDep, session: SessionDep
) -> AgentTask:
    """Update a run (``PATCH /api/v1/runs/{id}``)."""
    with session.begin():
        run = runs.get_run(session=session, principal=principal, run_pk=run_pk, need=Scope.WRITE)
        return AgentTask.model_validate(runs.update_run(session=session, run=run, changes=body))


@router.get("/", response_model=list[AgentTask])
def list_recent(
    principal: SeedPrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
) -> list[AgentTask]:
    """The newest runs as a plain list (the legacy listing; use ``/paged`` to page)."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, _ = runs.list_runs(
            session=session, project=project, filters=RunFilters(), limit=limit, cursor=None
        )
        return [AgentTask.model_validate(r) for r in rows]


@router.get("/paged", response_model=AgentTaskPage)
def paged(
    principal: SeedPrincipalDep,
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
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = runs.list_runs(
            session=session,
            project=project,
            filters=_filters(since, status, task),
            limit=limit,
            cursor=cursor,
        )
        return AgentTaskPage(
            items=[AgentTask.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get(
    "/paged.csv",
    response_class=StreamingResponse,
    responses=streamed("text/csv", "RFC 4180 CSV with a header row"),
)
def paged_csv(
    principal: SeedPrincipalDep,
    session: SessionDep,
    state: StateDep,
    project_id: ProjectQuery = None,
    limit: ExportLimit = None,
    since: SinceQuery = None,
    status: StatusQuery = [],  # noqa: B006
    task: TaskQuery = [],  # noqa: B006
) -> StreamingResponse:
    """The filtered runs as CSV, streamed with no row cap (``limit`` optional)."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        pid = project.id
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        run_export.iter_csv(state.engine, pid, _filters(since, status, task), limit=limit),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agents-tasks-{stamp}.csv"'},
    )


def seed_admin_key(
    state: StateDep,
    x_admin_key: Annotated[str | None, Depends(admin_key_scheme)],
) -> Principal:
    """The admin key, exactly as the seed endpoint checked it: anything else is 403."""
    configured = state.settings.auth.admin_api_key
    try:
        return principal_from_admin_key(
            configured.get_secret_value() if configured else None, x_admin_key or ""
        )
    except PermissionDenied:
        raise PermissionDenied("Forbidden") from None


class PruneResult(BaseModel):
    deleted: int
    cutoff: str
    #: Present only when ``TASKLEDGER_RETENTION_DRY_RUN_ONLY`` is on: nothing was deleted, and
    #: ``would_delete`` runs would have been (the seed's shape is otherwise unchanged).
    dry_run: bool | None = None
    would_delete: int | None = None


PruneCutoff = Annotated[
    datetime,
    BeforeValidator(parse_cutoff),
    Query(
        description=(
            "Delete runs started before this: ISO 8601 with an offset or `Z` "
            "(e.g. `2025-07-01T00:00:00Z`), not in the future."
        ),
    ),
]


@router.delete(
    "/before",
    response_model=PruneResult,
    response_model_exclude_none=True,
    responses={
        403: {"model": ErrorMessage, "description": "No, a wrong, or an unconfigured admin key"},
        409: {
            "model": ErrorMessage,
            "description": (
                "Over max_rows_per_run or max_table_fraction of the policy in force; the detail "
                "names the cap and the `taskledger runs prune` command that can force it"
            ),
        },
    },
)
def prune_before(
    principal: Annotated[Principal, Depends(seed_admin_key)],
    state: StateDep,
    date: PruneCutoff,
) -> PruneResult:
    """Delete every unheld run started before ``date``, as an admin-confirmed retention run:
    bounded by the caps of the policy in force, archived first, audited (trigger ``endpoint``),
    counted in the spike window (alerting when it goes over) but never refused by it. Needs
    ``X-Admin-Key``."""
    request = RetentionRequest(
        actor=principal.actor,
        trigger=RetentionTrigger.ENDPOINT,
        policy=load_policy(state.settings.retention.policy),
        archive=state.archive_target,
        safeguards=Safeguards.from_settings(state.settings, spike_guard=state.spike_guard),
        metrics=state.metrics,
    )
    report = prune_runs_before(state.engine, state.session_factory, request, cutoff=date)
    return PruneResult(
        deleted=report.deleted,
        cutoff=date.isoformat(),
        dry_run=report.dry_run or None,
        would_delete=report.would_delete if report.dry_run else None,
    )
