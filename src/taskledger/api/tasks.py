"""``/api/v1/tasks``: tasks with dependencies, assignment and status transitions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from taskledger.api.deps import (
    NO_NUL,
    CursorQuery,
    LimitQuery,
    PrincipalDep,
    ProjectQuery,
    SessionDep,
    StateDep,
)
from taskledger.api.routing import LedgerRoute
from taskledger.enums import Scope, TaskStatus
from taskledger.errors import ConflictError
from taskledger.schemas.limits import AwareDatetime
from taskledger.schemas.tasks import (
    TaskAssign,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskStatusChange,
    TaskUpdate,
)
from taskledger.services import tasks
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=LedgerRoute)

_CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {"description": "A cycle, blockers, a terminal status or an archived room (detail says)"}
}


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED, responses=_CONFLICTS)
def create_task(body: TaskCreate, principal: PrincipalDep, session: SessionDep) -> TaskRead:
    """Create a `pending` task; it may depend on tasks that are not complete yet."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        task = tasks.create_task(
            session=session, project=project, data=body, created_by=principal.user_id
        )
        return tasks.to_read(session=session, tasks=[task])[0]


@router.get("", response_model=TaskPage)
def list_tasks(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    status: Annotated[list[TaskStatus] | None, Query(description="Repeatable.")] = None,
    assigned_to: uuid.UUID | None = None,
    room_id: Annotated[uuid.UUID | None, Query(description="Only the tasks of this room.")] = None,
    priority: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
    due_before: Annotated[
        AwareDatetime | None, Query(description="Due strictly before this instant.")
    ] = None,
    due_after: Annotated[
        AwareDatetime | None, Query(description="Due at or after this instant.")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> TaskPage:
    """The project's tasks, oldest first, each with `dependencies` and `blocked_by`."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = tasks.list_tasks(
            session=session,
            project_id=project.id,
            statuses=status or (),
            assigned_to=assigned_to,
            room_id=room_id,
            priority=priority,
            due_before=due_before,
            due_after=due_after,
            limit=limit,
            cursor=cursor,
        )
        return TaskPage(items=tasks.to_read(session=session, tasks=rows), next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskRead)
def get_task(task_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> TaskRead:
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.READ
        )
        return tasks.to_read(session=session, tasks=[task])[0]


@router.patch("/{task_id}", response_model=TaskRead, responses=_CONFLICTS)
def update_task(
    task_id: uuid.UUID, body: TaskUpdate, principal: PrincipalDep, session: SessionDep
) -> TaskRead:
    """Change fields or replace the dependencies; a cycle is refused with 409 naming it."""
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.WRITE
        )
        tasks.update_task(session=session, task=task, changes=body)
        return tasks.to_read(session=session, tasks=[task])[0]


@router.post("/{task_id}/assign", response_model=TaskRead)
def assign_task(
    task_id: uuid.UUID, body: TaskAssign, principal: PrincipalDep, session: SessionDep
) -> TaskRead:
    """Assign the task to an agent of the project or a user who may see it; nulls unassign."""
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.WRITE
        )
        tasks.assign_task(
            session=session,
            task=task,
            assignee_type=body.assignee_type,
            assignee_id=body.assignee_id,
        )
        return tasks.to_read(session=session, tasks=[task])[0]


@router.post("/{task_id}/status", response_model=TaskRead, responses=_CONFLICTS)
def change_status(
    task_id: uuid.UUID, body: TaskStatusChange, principal: PrincipalDep, session: SessionDep
) -> TaskRead:
    """Move the task through its lifecycle, stamping `started_at` and `completed_at`."""
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.WRITE
        )
        tasks.change_status(session=session, task=task, status=body.status, reopen=body.reopen)
        return tasks.to_read(session=session, tasks=[task])[0]


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "Unfinished tasks depend on this one"}},
)
def delete_task(
    task_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete the task, unless an unfinished task depends on it or a hold protects it. The task,
    its dependency edges and the runs' links to it are archived first, and the delete is
    audited and counted by the spike guard."""
    with session.begin():
        task = tasks.get_task(
            session=session, principal=principal, task_id=task_id, need=Scope.WRITE
        )
        tasks.ensure_deletable(session=session, task=task)
    report = state.delete_records("tasks", [task_id], actor=principal.actor)
    if report.deleted == 0:
        raise ConflictError("The task changed meanwhile (something now depends on it); retry.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
