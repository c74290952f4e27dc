"""The Runs page: the run history of a project, filtered by the URL's query string, with keyset
"Load more", exports of exactly the filters, saved views, a histogram, new-run polling and the
retention overlay.

The filters are the API's (``since``, ``until``, ``status``, ``task``, ``agent``,
``approval_state``, ``q``, ``run_id``), except that ``task`` also accepts comma-separated names,
as the filter form sends them. Everything is read through the services the API uses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from taskledger.enums import RunStatus, Scope
from taskledger.errors import ValidationFailed
from taskledger.retention.overlay import RunRetention, run_outlooks
from taskledger.retention.policy.load import load_policy
from taskledger.retention.policy.rules import Policy, PolicyError
from taskledger.schemas.limits import MAX_INT64, UtcDatetime
from taskledger.schemas.runs import RunFilters
from taskledger.services import run_export, run_history, saved_views
from taskledger.services import runs as runs_service
from taskledger.services.access import get_project_for
from taskledger.services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from taskledger.store.models import Project, Run
from taskledger.store.types import utcnow
from taskledger.web.charts import Bucket, legend, stacked_bars
from taskledger.web.deps import (
    PrincipalDep,
    ProjectChoice,
    ProjectDep,
    SessionDep,
    StateDep,
    choose_project,
)
from taskledger.web.pages import is_htmx, page_router, pages_of

router = page_router()

PAGE = "runs"
#: The statuses in the order of the pills and of the chart's stacks.
STATUSES = [s.value for s in RunStatus]
#: Rows "N new runs" inserts at once; the indicator then counts the rest.
NEW_ROWS_LIMIT = 200
_TIME = TypeAdapter(UtcDatetime)


@dataclass(frozen=True)
class RunQuery:
    """The page's query: the filters, the page size and where the page starts."""

    filters: RunFilters
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @property
    def filtered(self) -> bool:
        return self.filters != RunFilters()

    def pairs(self, project: uuid.UUID | None, *, web: bool = True) -> list[tuple[str, str]]:
        """The query string's pairs: as the page writes them (``web``: ``project``, tasks
        comma-separated), or as the JSON API takes them (``project_id``, ``task`` repeated)."""
        f = self.filters
        out: list[tuple[str, str]] = []
        if project is not None:
            out.append(("project" if web else "project_id", str(project)))
        for name in ("since", "until"):
            value: datetime | None = getattr(f, name)
            if value is not None:
                out.append((name, value.isoformat()))
        out += [("status", s.value) for s in f.status]
        if f.task:
            out += [("task", ",".join(f.task))] if web else [("task", t) for t in f.task]
        for name in ("agent", "approval_state", "q", "run_id"):
            if (text := getattr(f, name)) is not None:
                out.append((name, text))
        if self.limit != DEFAULT_LIMIT:
            out.append(("limit", str(self.limit)))
        return out

    def query_string(self, project: uuid.UUID | None, **extra: str | None) -> str:
        pairs = self.pairs(project) + [(k, v) for k, v in extra.items() if v is not None]
        return urlencode(pairs)

    def api_query(self, project: uuid.UUID | None) -> str:
        return urlencode(self.pairs(project, web=False))


def _text(name: str, values: Sequence[str], max_length: int) -> str | None:
    value = values[-1].strip() if values else ""
    if not value:
        return None
    if len(value) > max_length:
        raise ValidationFailed(f"At most {max_length} characters.", loc=("query", name))
    if "\x00" in value:
        raise ValidationFailed("NUL characters are not allowed.", loc=("query", name))
    return value


def _time(name: str, values: Sequence[str]) -> datetime | None:
    value = _text(name, values, 64)
    if value is None:
        return None
    try:
        return _TIME.validate_python(value)
    except ValidationError:
        raise ValidationFailed(
            f"{value!r} is not a date and time: use ISO 8601, like 2026-01-31T12:00 (UTC when "
            "it has no offset).",
            loc=("query", name),
        ) from None


def parse_query(request: Request) -> RunQuery:
    """The page's query from the URL; anything malformed is a 422 naming the parameter."""
    params = request.query_params
    statuses = []
    for value in params.getlist("status"):
        if not value:
            continue
        try:
            statuses.append(RunStatus(value))
        except ValueError:
            raise ValidationFailed(
                f"Unknown status {value!r}: one of {', '.join(STATUSES)}.", loc=("query", "status")
            ) from None
    tasks: list[str] = []
    for value in params.getlist("task"):
        for name in value.split(","):
            name = name.strip()
            if len(name) > 64 or "\x00" in name:
                raise ValidationFailed(
                    "A task name is at most 64 characters.", loc=("query", "task")
                )
            if name and name not in tasks:
                tasks.append(name)
    filters = RunFilters(
        since=_time("since", params.getlist("since")),
        until=_time("until", params.getlist("until")),
        status=sorted(set(statuses), key=STATUSES.index),
        task=tasks,
        agent=_text("agent", params.getlist("agent"), 255),
        approval_state=_text("approval_state", params.getlist("approval_state"), 32),
        q=_text("q", params.getlist("q"), 200),
        run_id=_text("run_id", params.getlist("run_id"), 64),
    )
    raw_limit = _text("limit", params.getlist("limit"), 10)
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ValidationFailed(
                f"The page size is a whole number from 1 to {MAX_LIMIT}.", loc=("query", "limit")
            )
        limit = int(raw_limit)
    cursor = _text("cursor", params.getlist("cursor"), 2048)
    return RunQuery(filters=filters, limit=limit, cursor=cursor)


def _after(request: Request) -> int | None:
    raw = _text("after", request.query_params.getlist("after"), 20)
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_INT64:
        raise ValidationFailed("after is the id of a run.", loc=("query", "after"))
    return int(raw)


def policy_in_force(state: Any) -> Policy | None:
    """The retention policy in force, or none when it cannot be read (the overlay is left out)."""
    try:
        return load_policy(state.settings.retention.policy)
    except (PolicyError, OSError):
        return None


@dataclass(frozen=True)
class RowView:
    """One row of the table, with what the page shows beside the run itself."""

    run: Run
    agent: str | None
    retention: RunRetention


def row_views(
    *, session: Session, project: Project, rows: Sequence[Run], policy: Policy | None
) -> list[RowView]:
    """The rows with their agents' names and retention outlooks: two queries for the page."""
    names = run_history.agent_names(session=session, agent_ids=(r.agent_id for r in rows))
    outlooks = run_outlooks(session=session, project=project, runs=rows, policy=policy)
    return [RowView(r, names.get(r.agent_id) if r.agent_id else None, outlooks[r.id]) for r in rows]


def _project(session: Session, principal: Any, project_id: uuid.UUID) -> Project:
    return get_project_for(
        session=session, principal=principal, project_id=project_id, need=Scope.READ
    )


ProjectParam = Annotated[uuid.UUID, Query(description="The project.")]


def _rows_context(
    request: Request,
    session: Session,
    principal: Any,
    state: Any,
    project_id: uuid.UUID,
    query: RunQuery,
    *,
    checked: bool = False,
) -> dict[str, Any]:
    # ``checked``: the project switcher has already checked the user's access to it.
    found = session.get(Project, project_id) if checked else None
    project = found or _project(session, principal, project_id)
    rows, next_cursor = runs_service.list_runs(
        session=session,
        project=project,
        filters=query.filters,
        limit=query.limit,
        cursor=query.cursor,
    )
    return {
        "rows": row_views(
            session=session, project=project, rows=rows, policy=policy_in_force(state)
        ),
        "next_cursor": next_cursor,
        "now": utcnow(),
        "query": query,
        "project_id": project_id,
        "statuses": STATUSES,
    }


@router.get("/runs")
def runs_page(
    request: Request,
    choice: ProjectDep,  # before the principal: one transaction reads both
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
) -> Response:
    """The page: filters, histogram (loaded after), table, paging, downloads, saved views."""
    query = parse_query(request)
    context: dict[str, Any] = {
        "page": PAGE,
        "choice": choice,
        "query": query,
        "statuses": STATUSES,
        "rows": [],
        "next_cursor": None,
        "project_id": None,
    }
    with session.begin():
        if choice.current is not None:
            context.update(
                _rows_context(
                    request, session, principal, state, choice.current.id, query, checked=True
                )
            )
        assert principal.user_id is not None
        context["views"] = saved_views.list_views(
            session=session, user_id=principal.user_id, page=PAGE
        )
    context["max_views"] = saved_views.MAX_VIEWS_PER_PAGE
    return pages_of(request).render(request, "runs.html", context)


@router.get("/runs/rows")
def runs_rows(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    project: ProjectParam,
) -> Response:
    """One page of rows (for "Load more"): the rows and the next "Load more" link."""
    query = parse_query(request)
    with session.begin():
        context = _rows_context(request, session, principal, state, project, query)
    context["more_oob"] = True
    return pages_of(request).render(request, "_runs_rows.html", context)


@router.get("/runs/new")
def runs_new(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    project: ProjectParam,
) -> Response:
    """The "N new runs" indicator: how many filtered runs sort before the run ``after``."""
    query = parse_query(request)
    after = _after(request)
    with session.begin():
        _project(session, principal, project)
        count = run_history.count_newer(
            session=session, project_id=project, filters=query.filters, after=after
        )
    context = {
        "count": count,
        "cap": run_history.NEWER_CAP,
        "query": query,
        "project_id": project,
        "after": after,
    }
    return pages_of(request).render(request, "_runs_new.html", context)


@router.get("/runs/new/rows")
def runs_new_rows(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    project: ProjectParam,
) -> Response:
    """The rows the indicator counted (up to 200), to put at the top of the table."""
    query = parse_query(request)
    after = _after(request)
    if not is_htmx(request):  # without JavaScript, the page itself shows them
        return RedirectResponse(f"/runs?{query.query_string(project)}", status_code=303)
    with session.begin():
        found = _project(session, principal, project)
        rows = run_history.list_newer(
            session=session,
            project_id=project,
            filters=query.filters,
            after=after,
            limit=NEW_ROWS_LIMIT,
        )
        views = row_views(session=session, project=found, rows=rows, policy=policy_in_force(state))
    context = {"rows": views, "now": utcnow(), "query": query, "project_id": project}
    return pages_of(request).render(
        request, "_runs_rows.html", context, headers={"HX-Trigger-After-Settle": "runs-check-new"}
    )


def histogram_buckets(histogram: run_history.StatusHistogram) -> list[Bucket]:
    """The histogram as the chart's bars, labelled by their start."""
    daily = histogram.bucket_seconds >= 86400
    fmt = "%Y-%m-%d" if daily else "%m-%d %H:%M"
    return [
        Bucket(histogram.bucket_start(i).strftime(fmt), counts)
        for i, counts in enumerate(histogram.counts)
    ]


@router.get("/runs/histogram")
def runs_histogram(
    request: Request,
    choice: ProjectDep,  # before the principal: one transaction reads both
    principal: PrincipalDep,
    session: SessionDep,
) -> Response:
    """Runs per status over time for the filtered set (an SVG); a page of its own without htmx."""
    query = parse_query(request)
    histogram = None
    if choice.current is not None:
        with session.begin():
            _project(session, principal, choice.current.id)
            histogram = run_history.status_histogram(
                session=session,
                project_id=choice.current.id,
                filters=query.filters,
                now=utcnow(),
            )
    context: dict[str, Any] = {"page": PAGE, "choice": choice, "query": query, "chart": None}
    if histogram is not None and histogram.total:
        context["chart"] = stacked_bars(
            histogram_buckets(histogram), series=STATUSES, title="Runs per status over time"
        )
        context["legend"] = legend(STATUSES)
        context["histogram"] = histogram
    name = "_runs_chart.html" if is_htmx(request) else "runs_chart.html"
    return pages_of(request).render(request, name, context)


def _export(
    request: Request,
    principal: Any,
    session: Session,
    state: Any,
    project: uuid.UUID,
    suffix: str,
) -> StreamingResponse:
    query = parse_query(request)
    with session.begin():
        pid = _project(session, principal, project).id
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    chunks: Iterable[bytes]
    if suffix == "csv":
        chunks = run_export.iter_csv(state.engine, pid, query.filters)
        media_type = "text/csv; charset=utf-8"
    else:
        chunks = run_export.iter_ndjson(state.engine, pid, query.filters)
        media_type = "application/x-ndjson"
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="runs-{stamp}.{suffix}"'},
    )


@router.get("/runs.csv")
def runs_csv(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    project: ProjectParam,
) -> Response:
    """Every run of the filters as CSV: the same export as ``GET /api/v1/runs.csv``."""
    return _export(request, principal, session, state, project, "csv")


@router.get("/runs.ndjson")
def runs_ndjson(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    project: ProjectParam,
) -> Response:
    """Every run of the filters as NDJSON: the same export as ``GET /api/v1/runs.ndjson``."""
    return _export(request, principal, session, state, project, "ndjson")


@router.post("/runs/views")
def save_view(
    principal: PrincipalDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=1000)],
    query: Annotated[str, Form(max_length=saved_views.MAX_QUERY)] = "",
) -> Response:
    """Save the current query string under a name (replacing the view of that name)."""
    assert principal.user_id is not None
    with session.begin():
        view = saved_views.save_view(
            session=session, user_id=principal.user_id, page=PAGE, name=name, query=query
        )
        target = f"/runs?{view.query}" if view.query else "/runs"
    return RedirectResponse(target, status_code=303)


@router.post("/runs/views/{view_id}/delete")
def delete_view(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    view_id: Annotated[int, Path(ge=1, le=MAX_INT64)],
) -> Response:
    """Delete one of the user's saved views, and go back to the page."""
    assert principal.user_id is not None
    with session.begin():
        saved_views.delete_view(session=session, user_id=principal.user_id, view_id=view_id)
    back = request.headers.get("referer") or ""
    target = back if back.startswith(str(request.base_url) + "runs") else "/runs"
    return RedirectResponse(target, status_code=303)


def _pretty(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@router.get("/runs/{run_pk}")
def run_detail(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    run_pk: Annotated[int, Path(ge=1, le=MAX_INT64)],
) -> Response:
    """One run: inputs, outputs URI, approval, log excerpt, timestamps, retention outlook."""
    with session.begin():
        run = runs_service.get_run(
            session=session, principal=principal, run_pk=run_pk, need=Scope.READ
        )
        project = _project(session, principal, run.project_id)
        (view,) = row_views(
            session=session, project=project, rows=[run], policy=policy_in_force(state)
        )
        inputs = _pretty(run.inputs)
    choice: ProjectChoice = choose_project(request, state, run.project_id)
    context = {
        "page": PAGE,
        "choice": choice,
        "row": view,
        "run": run,
        "inputs": inputs,
        "now": utcnow(),
        "project_name": project.name,
    }
    return pages_of(request).render(request, "run_detail.html", context)
