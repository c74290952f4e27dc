"""The dependency graph: cycles refused and named, diamonds allowed, long chains walked in a
bounded number of queries (counted, not timed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from taskledger.errors import ConflictError
from taskledger.schemas.tasks import TaskCreate, TaskUpdate
from taskledger.services import task_graph, tasks
from taskledger.store.models import Project, Task, TaskDependency
from tests.helpers import build_world, transaction

CHAIN = 10_000


@contextmanager
def statements(session: Session) -> Iterator[list[int]]:
    """The statements the session's connection runs in the block, as their parameter counts."""
    seen: list[int] = []
    connection = session.connection()

    def note(_conn: Any, _cursor: Any, _sql: str, parameters: Any, *_args: Any) -> None:
        seen.append(len(parameters or ()))

    event.listen(connection, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(connection, "before_cursor_execute", note)


def _chain(session: Session, project: Project, length: int) -> list[uuid.UUID]:
    """``length`` tasks, each depending on the one before, inserted in two bulk statements."""
    ids = [uuid.uuid4() for _ in range(length)]
    session.execute(
        insert(Task),
        [{"id": i, "project_id": project.id, "title": f"step {n}"} for n, i in enumerate(ids)],
    )
    session.execute(
        insert(TaskDependency),
        [{"task_id": ids[n], "depends_on_id": ids[n - 1]} for n in range(1, length)],
    )
    return ids


def _new(session: Session, project: Project, title: str, *deps: uuid.UUID) -> Task:
    return tasks.create_task(
        session=session,
        project=project,
        data=TaskCreate(title=title, dependencies=list(deps)),
        created_by=None,
    )


def test_closing_a_10000_long_chain_is_refused_and_named(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    with transaction(app) as session:
        ids = _chain(session, world.project, CHAIN)
    with transaction(app) as session:
        first = session.get(Task, ids[0])
        assert first is not None
        with statements(session) as seen, pytest.raises(ConflictError) as refused:
            tasks.update_task(
                session=session, task=first, changes=TaskUpdate(dependencies=[ids[-1]])
            )
    cycle = refused.value.detail["cycle"]
    assert cycle == [str(ids[0]), *(str(i) for i in reversed(ids))]
    assert len(cycle) == CHAIN + 1
    # A level-by-level walk to the full load, then the rest in memory: not a query per link.
    assert len(seen) <= task_graph._LEVELS_BEFORE_FULL_LOAD + 5, len(seen)

    # Extending the chain is no cycle, and neither is a new head depending on its end.
    with transaction(app) as session:
        tail = _new(session, world.project, "tail", ids[-1])
        first = session.get(Task, ids[0])
        assert first is not None
        head = _new(session, world.project, "head")
        tasks.update_task(session=session, task=first, changes=TaskUpdate(dependencies=[head.id]))
        assert task_graph.find_cycle(
            session=session,
            project_id=world.project.id,
            task_id=head.id,
            new_dependencies=[tail.id],
        ) == [
            head.id,
            tail.id,
            *reversed(ids),
            head.id,
        ]

    # Through the API too, and the response names the whole cycle.
    response = client.patch(
        f"/api/v1/tasks/{ids[0]}",
        json={"dependencies": [str(ids[-1])]},
        headers=world.headers["write_key"],
    )
    assert response.status_code == 409
    assert len(response.json()["detail"]["cycle"]) == CHAIN + 1


def test_a_diamond_is_not_a_cycle(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    with transaction(app) as session:
        top = _new(session, world.project, "top")
        left = _new(session, world.project, "left", top.id)
        right = _new(session, world.project, "right", top.id)
        bottom = _new(session, world.project, "bottom", left.id, right.id)
        # Re-stating the diamond's edges, or adding a shortcut across it, closes nothing.
        tasks.update_task(
            session=session,
            task=bottom,
            changes=TaskUpdate(dependencies=[left.id, right.id, top.id]),
        )
        assert (
            task_graph.find_cycle(
                session=session,
                project_id=world.project.id,
                task_id=bottom.id,
                new_dependencies=[top.id],
            )
            is None
        )
        views = task_graph.dependency_views(session=session, task_ids=[bottom.id, top.id])
        assert set(views[bottom.id].dependencies) == {left.id, right.id, top.id}
        assert views[top.id].dependencies == []
        # The top depending on the bottom closes one, through either side.
        cycle = task_graph.find_cycle(
            session=session,
            project_id=world.project.id,
            task_id=top.id,
            new_dependencies=[bottom.id],
        )
        assert cycle is not None
        assert cycle[0] == cycle[-1] == top.id
        assert cycle[1] == bottom.id
        assert len(cycle) == 3  # the shortcut bottom -> top is the shortest way round
        tasks.update_task(
            session=session, task=bottom, changes=TaskUpdate(dependencies=[left.id, right.id])
        )
        cycle = task_graph.find_cycle(
            session=session,
            project_id=world.project.id,
            task_id=top.id,
            new_dependencies=[bottom.id],
        )
        assert cycle is not None
        assert cycle[:2] == [top.id, bottom.id] and cycle[2] in (left.id, right.id)
        assert cycle[3:] == [top.id]


def test_wide_fan_in_stays_cheap(app: FastAPI, client: TestClient) -> None:
    """Many paths to the same tasks: each reachable task is visited once, not once per path."""
    world = build_world(app, client)
    with transaction(app) as session:
        layers: list[list[uuid.UUID]] = [[_new(session, world.project, "root").id]]
        for depth in range(40):  # deeper than the level-by-level walk goes
            layers.append(
                [_new(session, world.project, f"{depth}-{k}", *layers[-1]).id for k in range(3)]
            )
        sink = _new(session, world.project, "sink", *layers[-1])
        with statements(session) as seen:
            assert (
                task_graph.find_cycle(
                    session=session,
                    project_id=world.project.id,
                    task_id=sink.id,
                    new_dependencies=[layers[-1][0]],
                )
                is None
            )
            cycle = task_graph.find_cycle(
                session=session,
                project_id=world.project.id,
                task_id=layers[0][0],
                new_dependencies=[sink.id],
            )
    # Each level asks for the (at most 3) tasks of one layer: a task reached by many paths is
    # walked once. Walking every path would ask for 3, 9, 27... at once, and soon many queries.
    assert seen and max(seen) <= 3, seen
    assert len(seen) <= 2 * (task_graph._LEVELS_BEFORE_FULL_LOAD + 1), len(seen)
    assert cycle is not None and len(cycle) == 43  # root, sink, 40 layers, root
    assert cycle[0] == cycle[-1] == layers[0][0]
    assert [cycle[depth + 2] in layers[-1 - depth] for depth in range(40)] == [True] * 40
