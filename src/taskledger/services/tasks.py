"""Tasks: create, list with filters, change, assign, move through their lifecycle, delete.

The lifecycle (SPEC section 2): entering ``in_progress`` stamps ``started_at`` and needs every
dependency completed; entering a terminal status stamps ``completed_at``; leaving a terminal
status needs an explicit reopen, which clears ``completed_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskledger.enums import TERMINAL_STATUSES, AssigneeType, Scope, TaskStatus
from taskledger.errors import ConflictError, NotFoundError
from taskledger.schemas.tasks import TaskCreate, TaskRead, TaskUpdate
from taskledger.services import task_graph
from taskledger.services.access import Principal
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import load_for, require_open_room
from taskledger.store.models import Agent, Project, Task, User
from taskledger.store.types import utcnow

TASKS_KEYSET = Keyset("tasks", (Task.created_at, Task.id), descending=False)


def to_read(*, session: Session, tasks: Sequence[Task]) -> list[TaskRead]:
    """Responses for ``tasks``, with their dependencies and blockers loaded in one query."""
    views = task_graph.dependency_views(session=session, task_ids=[t.id for t in tasks])
    return [
        TaskRead.model_validate(
            {
                **{name: getattr(task, name) for name in _READ_COLUMNS},
                "dependencies": views[task.id].dependencies,
                "blocked_by": views[task.id].blocked_by,
            }
        )
        for task in tasks
    ]


_READ_COLUMNS = [
    name for name in TaskRead.model_fields if name not in ("dependencies", "blocked_by")
]


def check_assignee(
    *, session: Session, project: Project, assignee_type: AssigneeType, assignee_id: uuid.UUID
) -> None:
    """An agent of the project, or an active user who may see it (its owner or a superuser)."""
    if assignee_type is AssigneeType.AGENT:
        agent = session.get(Agent, assignee_id)
        if agent is None or agent.project_id != project.id:
            raise NotFoundError(f"Agent {assignee_id} not found in this project.")
        return
    user = session.get(User, assignee_id)
    if user is None or not user.is_active or not (user.is_superuser or user.id == project.owner_id):
        raise NotFoundError(f"User {assignee_id} not found among this project's users.")


def create_task(
    *, session: Session, project: Project, data: TaskCreate, created_by: uuid.UUID | None
) -> Task:
    """Create a ``pending`` task; its dependencies must be tasks of the same project."""
    if data.assignee_type is not None and data.assignee_id is not None:
        check_assignee(
            session=session,
            project=project,
            assignee_type=data.assignee_type,
            assignee_id=data.assignee_id,
        )
    if data.room_id is not None:
        require_open_room(session=session, room_id=data.room_id, project_id=project.id)
    task = Task(
        project_id=project.id,
        title=data.title,
        description=data.description,
        status=TaskStatus.PENDING.value,
        priority=data.priority,
        due_date=data.due_date,
        result=data.result,
        assigned_to=data.assignee_id,
        assigned_to_type=data.assignee_type.value if data.assignee_type else None,
        created_by=created_by,
        room_id=data.room_id,
    )
    session.add(task)
    session.flush()
    task_graph.set_dependencies(
        session=session, task=task, ids=data.dependencies, check_cycles=False
    )
    return task


def list_tasks(
    *,
    session: Session,
    project_id: uuid.UUID,
    statuses: Sequence[TaskStatus] = (),
    assigned_to: uuid.UUID | None = None,
    room_id: uuid.UUID | None = None,
    priority: str | None = None,
    due_before: datetime | None = None,
    due_after: datetime | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Task], str | None]:
    """One page of the project's tasks, oldest first.

    Args:
        statuses: Any of these statuses (all when empty).
        due_before: Due strictly before this instant.
        due_after: Due at or after this instant.
    """
    stmt = select(Task).where(Task.project_id == project_id)
    if statuses:
        stmt = stmt.where(Task.status.in_([s.value for s in statuses]))
    if assigned_to is not None:
        stmt = stmt.where(Task.assigned_to == assigned_to)
    if room_id is not None:
        stmt = stmt.where(Task.room_id == room_id)
    if priority is not None:
        stmt = stmt.where(Task.priority == priority)
    if due_before is not None:
        stmt = stmt.where(Task.due_date < due_before)
    if due_after is not None:
        stmt = stmt.where(Task.due_date >= due_after)
    filters = {
        "project_id": str(project_id),
        "status": [s.value for s in statuses],
        "assigned_to": assigned_to,
        "room_id": room_id,
        "priority": priority,
        "due_before": due_before,
        "due_after": due_after,
    }
    return paginate(
        session=session, stmt=stmt, keyset=TASKS_KEYSET, limit=limit, cursor=cursor, filters=filters
    )


def get_task(*, session: Session, principal: Principal, task_id: uuid.UUID, need: Scope) -> Task:
    """The task, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session, principal=principal, model=Task, row_id=task_id, need=need, label="Task"
    )


def update_task(*, session: Session, task: Task, changes: TaskUpdate) -> Task:
    """Apply the fields present in ``changes``; new dependencies are checked for cycles."""
    values = changes.model_dump(exclude_unset=True)
    dependencies = values.pop("dependencies", None)
    room_id = values.get("room_id")
    if room_id is not None and room_id != task.room_id:
        require_open_room(session=session, room_id=room_id, project_id=task.project_id)
    for name, value in values.items():
        setattr(task, name, value.value if isinstance(value, StrEnum) else value)
    if dependencies is not None:
        task_graph.set_dependencies(session=session, task=task, ids=dependencies)
    session.flush()
    return task


def assign_task(
    *,
    session: Session,
    task: Task,
    assignee_type: AssigneeType | None,
    assignee_id: uuid.UUID | None,
) -> Task:
    """Give the task to an agent or user of its project, or unassign it (both None)."""
    if assignee_type is not None and assignee_id is not None:
        project = session.get(Project, task.project_id)
        assert project is not None  # the foreign key guarantees it
        check_assignee(
            session=session, project=project, assignee_type=assignee_type, assignee_id=assignee_id
        )
    task.assigned_to = assignee_id
    task.assigned_to_type = assignee_type.value if assignee_type else None
    session.flush()
    return task


def change_status(*, session: Session, task: Task, status: TaskStatus, reopen: bool) -> Task:
    """Move the task to ``status`` under the rules of SPEC section 2.

    Moving to the status it already has changes nothing (so retries are harmless).

    Raises:
        ConflictError: leaving a terminal status without ``reopen``, or starting while
            dependencies are incomplete (the detail names them under ``blocked_by``).
    """
    old, new = task.status, status.value
    if new == old:
        return task
    if old in TERMINAL_STATUSES and not reopen:
        raise ConflictError(f'The task is {old}; send "reopen": true to move it back to {new}.')
    now = utcnow()
    if new == TaskStatus.IN_PROGRESS.value:
        blocking = task_graph.blockers(session=session, task_id=task.id)
        if blocking:
            raise ConflictError(
                {
                    "message": "The task cannot start before its dependencies complete.",
                    "blocked_by": blocking,
                }
            )
        task.started_at = now
    if new in TERMINAL_STATUSES:
        task.completed_at = now
    elif old in TERMINAL_STATUSES:
        task.completed_at = None
    task.status = new
    session.flush()
    return task


def ensure_deletable(*, session: Session, task: Task) -> None:
    """Refuse (409, naming them) to delete a task that unfinished tasks depend on.

    The delete itself goes through
    :func:`taskledger.retention.execute.deletes.delete_records`, which archives the task, its
    edges and the runs' links to it, audits it and applies the spike guard; it re-checks this
    condition at the moment of deletion.
    """
    dependents = task_graph.active_dependents(session=session, task_id=task.id)
    if dependents:
        raise ConflictError(
            {
                "message": "Tasks that are not finished depend on this task.",
                "dependents": dependents,
            }
        )
