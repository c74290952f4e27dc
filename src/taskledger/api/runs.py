"""``/api/v1/runs``: record, read, update and list runs; stream exports; ingest in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from sqlalchemy.orm import Session

from taskledger.api.deps import (
    CursorQuery,
    ExportLimit,
    IntId,
    LimitQuery,
    PrincipalDep,
    ProjectQuery,
    SessionDep,
    StateDep,
    streamed,
)
from taskledger.api.routing import LedgerRoute
from taskledger.enums import ExportFormat, RunStatus, Scope
from taskledger.schemas.base import ReadModel, StrictModel
from taskledger.schemas.limits import UtcDatetime
from taskledger.schemas.runs import BatchResult, RunCreate, RunFilters, RunPage, RunRead, RunUpdate
from taskledger.services import run_batch, run_export, runs
from taskledger.services.access import Principal, resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.state import AppState
from taskledger.store.types import utcnow

router = APIRouter(prefix="/api/v1", tags=["runs"], route_class=LedgerRoute)


def run_filters(
    since: Annotated[
        UtcDatetime | None,
        Query(description="Runs started at or after (ISO 8601; UTC if no offset)."),
    ] = None,
    until: Annotated[UtcDatetime | None, Query(description="Runs started before.")] = None,
    status: Annotated[list[RunStatus], Query(description="Repeatable.")] = [],  # noqa: B006
    task: Annotated[list[str], Query(description="Task names; repeatable.")] = [],  # noqa: B006
    agent: Annotated[str | None, Query(description="Agent id or name.", max_length=255)] = None,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    approval_state: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[
        str | None, Query(description="Substring of the task name or log excerpt.", max_length=200)
    ] = None,
) -> RunFilters:
    """The run filters shared by the list and the exports."""
    return RunFilters(
        since=since,
        until=until,
        status=status,
        task=task,
        agent=agent,
        run_id=run_id,
        approval_state=approval_state,
        q=q,
    )


FiltersDep = Annotated[RunFilters, Depends(run_filters)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


def record_run(
    body: RunCreate,
    principal: Principal,
    session: Session,
    state: AppState,
    idempotency_key: str | None,
    *,
    shape: type[ReadModel],
) -> JSONResponse:
    """Record a run and answer it as ``shape``: 201, or 200 for a repeat of an idempotent
    request. ``POST /api/v1/runs`` and the seed-compatible ``POST /agents/tasks/`` both do."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        run, created = runs.create_run(
            session=session, project=project, data=body, idempotency_key=idempotency_key
        )
        payload = shape.model_validate(run).model_dump(mode="json")
    if created:
        state.metrics.runs_recorded.inc()
        return JSONResponse(payload, status_code=status.HTTP_201_CREATED)
    return JSONResponse(payload, status_code=status.HTTP_200_OK)


@router.post(
    "/runs",
    response_model=RunRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RunRead, "description": "A repeat of an idempotent request"}},
)
def create_run(
    body: RunCreate,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Record a run. With an idempotency key a repeat returns the original (200)."""
    return record_run(body, principal, session, state, idempotency_key, shape=RunRead)


class BatchBody(StrictModel):
    project_id: uuid.UUID | None = Field(default=None, description="When calling as a user.")
    runs: list[Any] = Field(description=f"Up to {run_batch.MAX_BATCH} runs (as for POST /runs).")
    on_existing: run_batch.OnExisting = Field(
        default="keep",
        description="For an item whose idempotency key is recorded already: keep that run as "
        "it is, or advance it to the item when the item's status is at a later stage.",
    )


@router.post("/runs:batch", response_model=BatchResult, status_code=status.HTTP_201_CREATED)
def ingest_batch(
    body: Annotated[BatchBody, Body()],
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
) -> BatchResult:
    """Record up to 1000 runs in one transaction: all of them, or none and a 422 per item."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        result = run_batch.ingest_batch(
            session=session, project=project, raw=body.runs, on_existing=body.on_existing
        )
    state.metrics.runs_recorded.inc(result.created)
    return result


@router.get("/runs", response_model=RunPage)
def list_runs(
    principal: PrincipalDep,
    session: SessionDep,
    filters: FiltersDep,
    project_id: ProjectQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> RunPage:
    """Runs newest first, filtered, keyset-paginated."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = runs.list_runs(
            session=session, project=project, filters=filters, limit=limit, cursor=cursor
        )
        return RunPage(items=[RunRead.model_validate(r) for r in rows], next_cursor=next_cursor)


def _export(
    kind: ExportFormat,
    principal: Principal,
    session: Session,
    state: AppState,
    filters: RunFilters,
    project_id: uuid.UUID | None,
    limit: int | None,
) -> StreamingResponse:
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        pid = project.id
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    chunks: Iterator[bytes]
    if kind is ExportFormat.CSV:
        chunks = run_export.iter_csv(state.engine, pid, filters, limit=limit)
        media_type = "text/csv; charset=utf-8"
    else:
        chunks = run_export.iter_ndjson(state.engine, pid, filters, limit=limit)
        media_type = "application/x-ndjson"
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="runs-{stamp}.{kind}"'},
    )


@router.get(
    "/runs.csv",
    response_class=StreamingResponse,
    responses=streamed("text/csv", "RFC 4180 CSV with a header row"),
)
def export_csv(
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    filters: FiltersDep,
    project_id: ProjectQuery = None,
    limit: ExportLimit = None,
) -> StreamingResponse:
    """Every matching run as CSV (RFC 4180, header row), streamed; cells that a spreadsheet
    would read as formulas get a leading quote."""
    return _export(ExportFormat.CSV, principal, session, state, filters, project_id, limit)


@router.get(
    "/runs.ndjson",
    response_class=StreamingResponse,
    responses=streamed("application/x-ndjson", "One JSON object per run and line"),
)
def export_ndjson(
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    filters: FiltersDep,
    project_id: ProjectQuery = None,
    limit: ExportLimit = None,
) -> StreamingResponse:
    """Every matching run as one JSON object per line, streamed."""
    return _export(ExportFormat.NDJSON, principal, session, state, filters, project_id, limit)


@router.get("/runs/{run_pk}", response_model=RunRead)
def get_run(run_pk: IntId, principal: PrincipalDep, session: SessionDep) -> RunRead:
    with session.begin():
        return RunRead.model_validate(
            runs.get_run(session=session, principal=principal, run_pk=run_pk, need=Scope.READ)
        )


@router.patch("/runs/{run_pk}", response_model=RunRead)
def update_run(
    run_pk: IntId, body: RunUpdate, principal: PrincipalDep, session: SessionDep
) -> RunRead:
    """Change status, approval, approver, outputs or log excerpt (see the status rules)."""
    with session.begin():
        run = runs.get_run(session=session, principal=principal, run_pk=run_pk, need=Scope.WRITE)
        return RunRead.model_validate(runs.update_run(session=session, run=run, changes=body))


@router.delete(
    "/runs/{run_pk}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        409: {"description": "The run is under a retention hold"},
        429: {"description": "The deletion spike guard refused; see Retry-After"},
    },
)
def delete_run(
    run_pk: IntId, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete a run: archived first, audited, counted by the spike guard; refused under a hold."""
    with session.begin():
        runs.get_run(session=session, principal=principal, run_pk=run_pk, need=Scope.WRITE)
    state.delete_records("runs", [run_pk], actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
