"""The dependency graph between tasks: same-project edges, cycle refusal, blockers, dependents.

An edge ``task_id -> depends_on_id`` says the task cannot start before the other completes. The
graph is kept acyclic: adding edges runs :func:`find_cycle`, an iterative breadth-first walk from
the new edges (no recursion limit, a bounded number of queries however deep the chain) that names
the cycle it would close.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from taskledger.enums import TERMINAL_STATUSES, TaskStatus
from taskledger.errors import ConflictError, NotFoundError
from taskledger.store.models import Task, TaskDependency

# Levels walked one query each before the walk loads the project's edges at once (see find_cycle).
_LEVELS_BEFORE_FULL_LOAD = 32
_CHUNK = 1000  # ids per IN list: well within every driver's parameter limit


@dataclass
class DependencyView:
    """What a task response shows of the graph: its dependencies and the incomplete ones."""

    dependencies: list[uuid.UUID] = field(default_factory=list)
    blocked_by: list[uuid.UUID] = field(default_factory=list)


def dependency_views(
    *, session: Session, task_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, DependencyView]:
    """The dependencies of many tasks (a page of a list) in one query, oldest dependency first."""
    views: dict[uuid.UUID, DependencyView] = {task_id: DependencyView() for task_id in task_ids}
    if not views:
        return views
    rows = session.execute(
        select(TaskDependency.task_id, Task.id, Task.status)
        .join(Task, Task.id == TaskDependency.depends_on_id)
        .where(TaskDependency.task_id.in_(list(views)))
        .order_by(Task.created_at, Task.id)
    )
    for task_id, depends_on_id, status in rows:
        view = views[task_id]
        view.dependencies.append(depends_on_id)
        if status != TaskStatus.COMPLETED.value:
            view.blocked_by.append(depends_on_id)
    return views


def _unique(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


def require_tasks_in_project(
    *, session: Session, project_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """``ids`` without repeats; 404 naming every id that is not a task of ``project_id``."""
    wanted = _unique(ids)
    if not wanted:
        return wanted
    found = set(
        session.scalars(select(Task.id).where(Task.id.in_(wanted), Task.project_id == project_id))
    )
    missing = [str(i) for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"Dependencies not found in this project: {', '.join(missing)}.")
    return wanted


def find_cycle(
    *,
    session: Session,
    task_id: uuid.UUID,
    project_id: uuid.UUID,
    new_dependencies: Collection[uuid.UUID],
) -> list[uuid.UUID] | None:
    """The cycle that edges ``task_id -> new_dependencies`` would close, or None.

    Adding those edges closes a cycle exactly when ``task_id`` is already reachable from one of
    them. A breadth-first walk decides that, so the cycle it names is a shortest one. It starts
    with one query per level, which keeps shallow graphs (the usual case) cheap in time and
    memory; past ``_LEVELS_BEFORE_FULL_LOAD`` levels, it loads the project's edges in one query
    and finishes in memory, so a 10,000-long chain costs one query instead of 10,000. (A
    recursive SQL query would do the walk in one statement, but PostgreSQL plans its recursive
    step as a scan of the whole table until statistics exist, which is quadratic on a chain.)

    Returns:
        The cycle as ids in dependency order, starting and ending with ``task_id``.
    """
    starts = _unique(new_dependencies)
    if not starts:
        return None
    if task_id in starts:
        return [task_id, task_id]
    parent: dict[uuid.UUID, uuid.UUID | None] = dict.fromkeys(starts)
    frontier = starts
    for _level in range(_LEVELS_BEFORE_FULL_LOAD):
        found: list[uuid.UUID] = []
        for chunk in _chunks(frontier):
            edges = session.execute(
                select(TaskDependency.task_id, TaskDependency.depends_on_id).where(
                    TaskDependency.task_id.in_(chunk)
                )
            )
            for source, target in edges:
                if target not in parent:
                    parent[target] = source
                    found.append(target)
        if task_id in parent:
            return _cycle_through(parent, task_id)
        if not found:
            return None
        frontier = found
    adjacency: dict[uuid.UUID, list[uuid.UUID]] = {}
    project_edges = session.execute(
        select(TaskDependency.task_id, TaskDependency.depends_on_id)
        .join(Task, Task.id == TaskDependency.task_id)
        .where(Task.project_id == project_id)
    )
    for source, target in project_edges:
        adjacency.setdefault(source, []).append(target)
    queue = deque(frontier)
    while queue:  # a loop, not recursion: chains may be arbitrarily long
        node = queue.popleft()
        for target in adjacency.get(node, ()):
            if target not in parent:
                parent[target] = node
                if target == task_id:
                    return _cycle_through(parent, task_id)
                queue.append(target)
    return None


def _chunks(ids: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _cycle_through(
    parent: dict[uuid.UUID, uuid.UUID | None], task_id: uuid.UUID
) -> list[uuid.UUID]:
    """``task_id``, then the walk's path from a new dependency back to ``task_id``."""
    path: list[uuid.UUID] = []
    step: uuid.UUID | None = task_id
    while step is not None:
        path.append(step)
        step = parent[step]
    path.reverse()
    return [task_id, *path]


def set_dependencies(
    *, session: Session, task: Task, ids: Sequence[uuid.UUID], check_cycles: bool = True
) -> None:
    """Make ``ids`` the task's dependencies: 404 for tasks outside its project, 409 for a cycle.

    Args:
        check_cycles: False only for a task created in this transaction: nothing can depend on
            it yet, so its first edges cannot close a cycle and the walk would be wasted work.
    """
    wanted = require_tasks_in_project(session=session, project_id=task.project_id, ids=ids)
    current = set(
        session.scalars(
            select(TaskDependency.depends_on_id).where(TaskDependency.task_id == task.id)
        )
    )
    added = [i for i in wanted if i not in current]
    removed = current.difference(wanted)
    # Existing edges are acyclic already; only the new ones can close a cycle.
    cycle = None
    if check_cycles:
        cycle = find_cycle(
            session=session, task_id=task.id, project_id=task.project_id, new_dependencies=added
        )
    if cycle is not None:
        raise ConflictError(
            {
                "message": "These dependencies would create a cycle.",
                "cycle": [str(i) for i in cycle],
            }
        )
    if removed:
        session.execute(
            delete(TaskDependency).where(
                TaskDependency.task_id == task.id, TaskDependency.depends_on_id.in_(removed)
            )
        )
    if added:
        session.execute(
            insert(TaskDependency), [{"task_id": task.id, "depends_on_id": i} for i in added]
        )


def _describe(rows: Iterable[tuple[uuid.UUID, str, str]]) -> list[dict[str, str]]:
    return [{"id": str(i), "title": title, "status": status} for i, title, status in rows]


def blockers(*, session: Session, task_id: uuid.UUID) -> list[dict[str, str]]:
    """The dependencies of ``task_id`` that are not completed: id, title and status of each."""
    rows = session.execute(
        select(Task.id, Task.title, Task.status)
        .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
        .where(TaskDependency.task_id == task_id, Task.status != TaskStatus.COMPLETED.value)
        .order_by(Task.created_at, Task.id)
    )
    return _describe(rows.all())


def active_dependents(*, session: Session, task_id: uuid.UUID) -> list[dict[str, str]]:
    """The tasks not yet in a terminal status that depend on ``task_id``."""
    rows = session.execute(
        select(Task.id, Task.title, Task.status)
        .join(TaskDependency, TaskDependency.task_id == Task.id)
        .where(
            TaskDependency.depends_on_id == task_id,
            Task.status.not_in(sorted(TERMINAL_STATUSES)),
        )
        .order_by(Task.created_at, Task.id)
    )
    return _describe(rows.all())


# --- the neighbourhood of one task, for the web UI's dependency view --------------------------

#: How far the dependency view walks from a task, and how many tasks it shows at most.
NEIGHBOURHOOD_DEPTH = 8
NEIGHBOURHOOD_LIMIT = 200


@dataclass(frozen=True)
class TaskRef:
    """A task as a link shows it: id, title and status."""

    id: uuid.UUID
    title: str
    status: str


@dataclass
class GraphNode:
    """A task in a dependency tree; ``seen`` marks a task shown already on another branch."""

    task: TaskRef
    children: list[GraphNode] = field(default_factory=list)
    seen: bool = False


@dataclass
class Neighbourhood:
    """A task's upstream tree (what it depends on, transitively) and downstream tree (what
    depends on it, transitively), each cut at ``depth`` levels or ``limit`` tasks."""

    upstream: list[GraphNode]
    downstream: list[GraphNode]
    upstream_truncated: bool
    downstream_truncated: bool


def _walk(
    *, session: Session, task_id: uuid.UUID, upstream: bool, depth: int, limit: int
) -> tuple[list[GraphNode], bool]:
    """The tree of tasks reached from ``task_id`` along the edges in one direction.

    A breadth-first walk, one query per level (chunked), so each task sits on its shortest
    path from ``task_id``; a task reached again on another branch appears there with
    ``seen`` and no children, which keeps the tree finite and small on diamonds.
    """
    if upstream:
        source, target = TaskDependency.task_id, TaskDependency.depends_on_id
    else:
        source, target = TaskDependency.depends_on_id, TaskDependency.task_id
    placed: dict[uuid.UUID, GraphNode] = {}
    roots: list[GraphNode] = []
    parents: dict[uuid.UUID, list[GraphNode]] = {task_id: roots}
    frontier = [task_id]
    truncated = False
    for level in range(depth + 1):
        if not frontier:
            break
        found: list[uuid.UUID] = []
        for chunk in _chunks(frontier):
            rows = session.execute(
                select(source, Task.id, Task.title, Task.status)
                .join(Task, Task.id == target)
                .where(source.in_(chunk))
                .order_by(Task.created_at, Task.id)
            ).all()
            if rows and level == depth:
                truncated = True
                break
            for parent_id, child_id, title, status in rows:
                siblings = parents[parent_id]
                if child_id in placed or child_id == task_id:
                    siblings.append(GraphNode(TaskRef(child_id, title, status), seen=True))
                    continue
                if len(placed) >= limit:
                    truncated = True
                    continue
                node = GraphNode(TaskRef(child_id, title, status))
                placed[child_id] = node
                siblings.append(node)
                parents[child_id] = node.children
                found.append(child_id)
        frontier = found
    return roots, truncated


def neighbourhood(
    *,
    session: Session,
    task_id: uuid.UUID,
    depth: int = NEIGHBOURHOOD_DEPTH,
    limit: int = NEIGHBOURHOOD_LIMIT,
) -> Neighbourhood:
    """The upstream and downstream trees of ``task_id`` (see :class:`Neighbourhood`)."""
    up, up_cut = _walk(session=session, task_id=task_id, upstream=True, depth=depth, limit=limit)
    down, down_cut = _walk(
        session=session, task_id=task_id, upstream=False, depth=depth, limit=limit
    )
    return Neighbourhood(up, down, up_cut, down_cut)


def dependency_refs(
    *, session: Session, task_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[TaskRef]]:
    """The direct dependencies of many tasks with their titles and statuses, in one query."""
    refs: dict[uuid.UUID, list[TaskRef]] = {task_id: [] for task_id in task_ids}
    if not refs:
        return refs
    for chunk in _chunks(list(refs)):
        rows = session.execute(
            select(TaskDependency.task_id, Task.id, Task.title, Task.status)
            .join(Task, Task.id == TaskDependency.depends_on_id)
            .where(TaskDependency.task_id.in_(chunk))
            .order_by(Task.created_at, Task.id)
        )
        for owner, dep_id, title, status in rows:
            refs[owner].append(TaskRef(dep_id, title, status))
    return refs
