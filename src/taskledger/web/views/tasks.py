"""The Tasks page: a project's tasks with their status, assignee, due date and ``blocked_by``,
filtered in the URL and paged by keyset; start and complete; a task's detail with its upstream
and downstream tasks.

Starting a task whose dependencies are not all completed answers 409 with the blockers shown
next to the task: in its row (htmx swaps the row) or, without JavaScript, on the task's page.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from taskledger.enums import TERMINAL_STATUSES, Scope, TaskStatus
from taskledger.errors import ConflictError, ValidationFailed
from taskledger.services import task_board, task_graph, tasks
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.services.task_graph import TaskRef
from taskledger.store.types import utcnow
from taskledger.web.deps import PrincipalDep, ProjectDep, SessionDep, StateDep, choose_project
from taskledger.web.pages import is_htmx, page_router, pages_of
from taskledger.web.views.auth import safe_next

router = page_router()

IdParam = Annotated[str | None, Query(max_length=64)]
CursorParam = Annotated[str | None, Query(max_length=2048)]


def optional_uuid(value: str | None, name: str) -> uuid.UUID | None:
    """A select's value: empty is none; anything else must be an id (422 otherwise)."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(f"{name} must be an id.", loc=("query", name)) from None


def _common(**values: Any) -> dict[str, Any]:
    return {"page": "tasks", "terminal": TERMINAL_STATUSES, "now": utcnow(), **values}


@router.get("/tasks")
def tasks_page(
    request: Request,
    session: SessionDep,
    choice: ProjectDep,
    status: Annotated[list[TaskStatus] | None, Query()] = None,
    assignee: IdParam = None,
    room_id: IdParam = None,
    cursor: CursorParam = None,
) -> Response:
    """The table of tasks; htmx's "Load more" asks for the next rows only."""
    statuses = list(dict.fromkeys(status or ()))
    assigned_to = optional_uuid(assignee, "assignee")
    room = optional_uuid(room_id, "room_id")
    rows: list[task_board.TaskRow] = []
    next_cursor = None
    choices = task_board.TaskFilterChoices([], [])
    if choice.current is not None:
        with session.begin():
            found, next_cursor = tasks.list_tasks(
                session=session,
                project_id=choice.current.id,
                statuses=statuses,
                assigned_to=assigned_to,
                room_id=room,
                limit=DEFAULT_LIMIT,
                cursor=cursor,
            )
            rows = task_board.task_rows(session=session, task_list=found)
            if not (is_htmx(request) and cursor):
                choices = task_board.task_filter_choices(
                    session=session, project_id=choice.current.id
                )
    query = [("project", str(choice.current.id))] if choice.current else []
    query += [("status", s.value) for s in statuses]
    query += [(k, str(v)) for k, v in (("assignee", assigned_to), ("room_id", room)) if v]
    context = _common(
        choice=choice,
        rows=rows,
        next_cursor=next_cursor,
        query=query,
        statuses=list(TaskStatus),
        chosen_statuses={s.value for s in statuses},
        assignee=assigned_to,
        room_id=room,
        choices=choices,
        filtered=bool(statuses or assigned_to or room),
        continued=cursor is not None,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )
    name = "_tasks_rows.html" if is_htmx(request) and cursor else "tasks.html"
    return pages_of(request).render(request, name, context)


def _detail(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    task_id: uuid.UUID,
    *,
    blockers: list[TaskRef] | None = None,
    status_code: int = 200,
) -> Response:
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.READ
        )
        row = task_board.task_rows(session=session, task_list=[task])[0]
        graph = task_graph.neighbourhood(session=session, task_id=task.id)
    choice = choose_project(request, state, project=row.task.project_id)
    context = _common(choice=choice, row=row, graph=graph, blockers=blockers)
    return pages_of(request).render(request, "task_detail.html", context, status_code=status_code)


@router.get("/tasks/{task_id}")
def task_page(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    task_id: uuid.UUID,
) -> Response:
    """A task's detail, with its upstream and downstream tasks."""
    return _detail(request, session, principal, state, task_id)


def _move(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    task_id: uuid.UUID,
    status: TaskStatus,
    next_url: str | None,
) -> Response:
    """Move the task to ``status``; a refused start shows its blockers beside the task."""
    blockers: list[TaskRef] | None = None
    try:
        with session.begin():
            task = tasks.get_task(
                session=session, principal=principal, task_id=task_id, need=Scope.WRITE
            )
            tasks.change_status(session=session, task=task, status=status, reopen=False)
    except ConflictError as exc:
        detail = exc.detail
        if not (isinstance(detail, dict) and "blocked_by" in detail):
            raise
        blockers = [
            TaskRef(uuid.UUID(b["id"]), b["title"], b["status"]) for b in detail["blocked_by"]
        ]
    status_code = 409 if blockers else 200
    if not is_htmx(request):
        if blockers:
            return _detail(
                request, session, principal, state, task_id, blockers=blockers, status_code=409
            )
        target = safe_next(next_url) if next_url else f"/tasks/{task_id}"
        return RedirectResponse(target, status_code=303)
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.READ
        )
        row = task_board.task_rows(session=session, task_list=[task])[0]
    context = _common(row=row, blockers=blockers, here=next_url or "/tasks")
    # tasks.js swaps a 409 that says so: htmx would otherwise treat it as an error.
    headers = {"X-Task-Blocked": "1"} if blockers else None
    return pages_of(request).render(
        request, "_tasks_row.html", context, status_code=status_code, headers=headers
    )


NextField = Annotated[str | None, Form(alias="next", max_length=2048)]


@router.post("/tasks/{task_id}/start")
def start_task(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    task_id: uuid.UUID,
    next_url: NextField = None,
) -> Response:
    return _move(request, session, principal, state, task_id, TaskStatus.IN_PROGRESS, next_url)


@router.post("/tasks/{task_id}/complete")
def complete_task(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    task_id: uuid.UUID,
    next_url: NextField = None,
) -> Response:
    return _move(request, session, principal, state, task_id, TaskStatus.COMPLETED, next_url)
