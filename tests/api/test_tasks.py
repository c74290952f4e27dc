"""Tasks over HTTP: lifecycle and timestamps, blockers, dependencies, assignment, filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from tests.helpers import World, build_world, make_agent, make_task


def _post(client: TestClient, world: World, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json=body, headers=world.headers["write_key"])
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _status(client: TestClient, world: World, task_id: str, status: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/tasks/{task_id}/status",
        json={"status": status, **extra},
        headers=world.headers["write_key"],
    )


def test_transitions_set_timestamps(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    task = _post(client, world, title="build", priority="high", result={"partial": True})
    assert task["status"] == "pending"
    assert task["started_at"] is None and task["completed_at"] is None
    assert task["created_by"] is None  # created with a key

    started = _status(client, world, task["id"], "in_progress")
    assert started.status_code == 200
    assert started.json()["started_at"] is not None and started.json()["completed_at"] is None
    again = _status(client, world, task["id"], "in_progress")  # a retry changes nothing
    assert again.json()["started_at"] == started.json()["started_at"]

    done = _status(client, world, task["id"], "completed").json()
    assert done["status"] == "completed"
    assert datetime.fromisoformat(done["completed_at"]) >= datetime.fromisoformat(
        done["started_at"]
    )
    assert _status(client, world, task["id"], "completed").status_code == 200

    refused = _status(client, world, task["id"], "pending")
    assert refused.status_code == 409
    assert "reopen" in refused.json()["detail"]
    assert _status(client, world, task["id"], "failed").status_code == 409

    reopened = _status(client, world, task["id"], "in_progress", reopen=True).json()
    assert reopened["status"] == "in_progress" and reopened["completed_at"] is None
    assert reopened["started_at"] > done["started_at"]

    cancelled = _status(client, world, task["id"], "cancelled").json()
    assert cancelled["completed_at"] is not None
    failed = _status(client, world, task["id"], "failed", reopen=True).json()
    assert failed["status"] == "failed" and failed["completed_at"] >= cancelled["completed_at"]


def test_user_created_task_records_creator(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    response = client.post(
        "/api/v1/tasks",
        json={
            "title": "t",
            "project_id": str(world.project.id),
            "due_date": "2025-03-01T02:00:00+02:00",
        },
        headers=world.headers["owner"],
    )
    assert response.json()["created_by"] == str(world.owner.id)
    assert response.json()["due_date"] == "2025-03-01T00:00:00Z"  # returned in UTC


def test_blocked_start_names_the_blockers(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    first = _post(client, world, title="first")
    second = _post(client, world, title="second")
    # Created with incomplete dependencies: allowed.
    last = _post(client, world, title="last", dependencies=[first["id"], second["id"]])
    assert last["dependencies"] == [first["id"], second["id"]]
    assert last["blocked_by"] == [first["id"], second["id"]]

    blocked = _status(client, world, last["id"], "in_progress")
    assert blocked.status_code == 409
    detail = blocked.json()["detail"]
    assert [b["id"] for b in detail["blocked_by"]] == [first["id"], second["id"]]
    assert [b["title"] for b in detail["blocked_by"]] == ["first", "second"]

    _status(client, world, first["id"], "completed")
    _status(client, world, second["id"], "cancelled")  # terminal, but not completed: still blocks
    again = _status(client, world, last["id"], "in_progress")
    assert [b["id"] for b in again.json()["detail"]["blocked_by"]] == [second["id"]]

    _status(client, world, second["id"], "completed", reopen=True)
    view = client.get(f"/api/v1/tasks/{last['id']}", headers=world.headers["read_key"]).json()
    assert view["blocked_by"] == []
    assert _status(client, world, last["id"], "in_progress").status_code == 200


def test_dependencies_are_replaced_and_checked(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    a = _post(client, world, title="a")
    b = _post(client, world, title="b", dependencies=[a["id"], a["id"]])
    assert b["dependencies"] == [a["id"]]  # repeats collapse
    c = _post(client, world, title="c")
    url = f"/api/v1/tasks/{b['id']}"
    headers = world.headers["write_key"]

    replaced = client.patch(url, json={"dependencies": [c["id"]]}, headers=headers).json()
    assert replaced["dependencies"] == [c["id"]]
    assert (
        client.patch(url, json={"dependencies": []}, headers=headers).json()["dependencies"] == []
    )

    cycle = client.patch(
        f"/api/v1/tasks/{a['id']}", json={"dependencies": [b["id"]]}, headers=headers
    )
    assert cycle.status_code == 200  # b no longer depends on a
    cycle = client.patch(url, json={"dependencies": [a["id"]]}, headers=headers)
    assert cycle.status_code == 409
    assert cycle.json()["detail"]["cycle"] == [b["id"], a["id"], b["id"]]
    itself = client.patch(url, json={"dependencies": [b["id"]]}, headers=headers)
    assert itself.json()["detail"]["cycle"] == [b["id"], b["id"]]

    foreign = make_task(app, world.other_project, "elsewhere")
    for deps in ([str(foreign.id)], ["00000000-0000-0000-0000-000000000000"]):
        response = client.patch(url, json={"dependencies": deps}, headers=headers)
        assert response.status_code == 404
        assert deps[0] in response.json()["detail"]
        created = client.post(
            "/api/v1/tasks", json={"title": "x", "dependencies": deps}, headers=headers
        )
        assert created.status_code == 404
    for bad in (["not-a-uuid"], "x", None):
        assert client.patch(url, json={"dependencies": bad}, headers=headers).status_code == 422


def test_delete_refused_while_unfinished_tasks_depend(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    base = _post(client, world, title="base")
    dependent = _post(client, world, title="dependent", dependencies=[base["id"]])
    headers = world.headers["write_key"]
    refused = client.delete(f"/api/v1/tasks/{base['id']}", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["detail"]["dependents"] == [
        {"id": dependent["id"], "title": "dependent", "status": "pending"}
    ]
    _status(client, world, dependent["id"], "cancelled")
    assert client.delete(f"/api/v1/tasks/{base['id']}", headers=headers).status_code == 204
    after = client.get(f"/api/v1/tasks/{dependent['id']}", headers=headers).json()
    assert after["dependencies"] == []
    assert client.delete(f"/api/v1/tasks/{base['id']}", headers=headers).status_code == 404


def test_assignment(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    task = _post(client, world, title="t")
    agent = make_agent(app, world.project)
    foreign_agent = make_agent(app, world.other_project)
    url = f"/api/v1/tasks/{task['id']}/assign"
    headers = world.headers["write_key"]

    def assign(kind: Any, who: Any) -> Any:
        body = {"assignee_type": kind, "assignee_id": str(who) if who else None}
        return client.post(url, json=body, headers=headers)

    to_agent = assign("agent", agent.id).json()
    assert (to_agent["assigned_to"], to_agent["assigned_to_type"]) == (str(agent.id), "agent")
    assert assign("user", world.owner.id).json()["assigned_to_type"] == "user"
    assert assign("user", world.superuser.id).status_code == 200
    assert assign("agent", foreign_agent.id).status_code == 404
    assert assign("user", world.stranger.id).status_code == 404  # cannot see the project
    assert assign("agent", world.owner.id).status_code == 404  # a user is not an agent
    unassigned = assign(None, None).json()
    assert unassigned["assigned_to"] is None and unassigned["assigned_to_type"] is None
    for body in (
        {"assignee_type": "agent"},
        {"assignee_type": "robot", "assignee_id": str(agent.id)},
        {"assignee_type": "agent", "assignee_id": None},
        {"assignee_type": "agent", "assignee_id": "nope"},
    ):
        assert client.post(url, json=body, headers=headers).status_code == 422, body
    created = client.post(
        "/api/v1/tasks",
        json={"title": "x", "assignee_type": "agent", "assignee_id": str(agent.id)},
        headers=headers,
    )
    assert created.json()["assigned_to"] == str(agent.id)


def test_filters(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    make_task(
        app,
        world.project,
        "early",
        priority="high",
        due_date=datetime.fromisoformat("2025-01-01T00:00:00+00:00"),
    )
    make_task(
        app,
        world.project,
        "late",
        priority="low",
        due_date=datetime.fromisoformat("2025-06-01T00:00:00+00:00"),
        assignee_type="agent",
        assignee_id=agent.id,
    )
    started = make_task(app, world.project, "started")
    _status(client, world, str(started.id), "in_progress")
    headers = world.headers["read_key"]

    def titles(params: Any) -> list[str]:
        response = client.get("/api/v1/tasks", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()["items"]]

    assert titles({}) == ["early", "late", "started"]
    assert titles({"status": "pending"}) == ["early", "late"]
    assert titles([("status", "pending"), ("status", "in_progress")]) == [
        "early",
        "late",
        "started",
    ]
    assert titles({"status": "completed"}) == []
    assert titles({"assigned_to": str(agent.id)}) == ["late"]
    assert titles({"priority": "high"}) == ["early"]
    assert titles({"due_before": "2025-06-01T00:00:00Z"}) == ["early"]
    assert titles({"due_after": "2025-06-01T02:00:00+02:00"}) == ["late"]
    assert titles({"due_after": "2024-01-01T00:00:00Z", "due_before": "2026-01-01T00:00:00Z"}) == [
        "early",
        "late",
    ]
    for bad in (
        {"status": "done"},
        {"due_before": "2025-01-01T00:00:00"},  # no offset
        {"due_after": "yesterday"},
        {"assigned_to": "someone"},
        {"priority": "x" * 51},
    ):
        assert client.get("/api/v1/tasks", params=bad, headers=headers).status_code == 422, bad

    page = client.get("/api/v1/tasks", params={"status": "pending", "limit": "1"}, headers=headers)
    cursor = page.json()["next_cursor"]
    assert cursor is not None
    other = client.get(
        "/api/v1/tasks", params={"status": "completed", "cursor": cursor}, headers=headers
    )
    assert other.status_code == 400
    same = client.get(
        "/api/v1/tasks", params={"status": "pending", "cursor": cursor}, headers=headers
    )
    assert [t["title"] for t in same.json()["items"]] == ["late"]


def test_list_loads_dependencies_without_n_plus_one(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    world = build_world(app, client)
    root = make_task(app, world.project, "root")
    headers = world.headers["read_key"]
    client.get("/api/v1/auth/me", headers=headers)  # the key's last_used_at is written now

    def statements_for_page(limit: int) -> int:
        seen: list[str] = []

        def record(*args: Any) -> None:
            seen.append(args[2])

        event.listen(engine, "before_cursor_execute", record)
        try:
            page = client.get("/api/v1/tasks", params={"limit": str(limit)}, headers=headers)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len(page.json()["items"]) == limit
        return len(seen)

    for i in range(30):
        make_task(app, world.project, f"t{i}", dependencies=[root.id])
    small, large = statements_for_page(2), statements_for_page(30)
    assert small == large


def test_bad_task_requests(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    task = make_task(app, world.project)
    headers = world.headers["write_key"]
    for body in (
        {},
        {"title": ""},
        {"title": 5},
        {"title": "t", "status": "pending"},  # status has its own route
        {"title": "t", "due_date": "2025-01-01T00:00:00"},
        {"title": "t", "assignee_type": "agent"},
        {"title": "t\x00"},
        {"title": "t", "result": {"nested": ["a\x00"]}},
    ):
        assert client.post("/api/v1/tasks", json=body, headers=headers).status_code == 422, body
    url = f"/api/v1/tasks/{task.id}"
    for body in ({"title": None}, {"status": "completed"}, {"due_date": "soon"}):
        assert client.patch(url, json=body, headers=headers).status_code == 422, body
    cleared = client.patch(url, json={"due_date": None, "priority": None}, headers=headers)
    assert cleared.status_code == 200
    for body in ({"status": "finished"}, {"status": "completed", "reopen": "please"}, {}):
        response = client.post(f"{url}/status", json=body, headers=headers)
        assert response.status_code == 422, body
    assert client.get("/api/v1/tasks/not-a-uuid", headers=headers).status_code == 422
    big = {"title": "t", "description": "x" * (1024 * 1024 + 1)}
    assert client.post("/api/v1/tasks", json=big, headers=headers).status_code == 413
