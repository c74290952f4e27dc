"""The hold scope ``room``: a held room keeps its participants and its tasks' ``room_id``, in
the planner, in every delete path, and through restore."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from taskledger.store.models import RoomParticipant, Task
from taskledger.store.types import utcnow
from tests.api.test_restore_report import ADMIN, last_audit
from tests.helpers import build_world, make_agent, transaction


def _room(client: TestClient, headers: dict[str, str], name: str) -> Any:
    created = client.post("/api/v1/rooms", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.text
    return created.json()


def _task(client: TestClient, headers: dict[str, str], room_id: str | None) -> str:
    created = client.post("/api/v1/tasks", json={"title": "t", "room_id": room_id}, headers=headers)
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


def _hold_room(client: TestClient, room_id: str) -> int:
    held = client.post(
        "/api/v1/admin/holds",
        json={"scope": "room", "target_id": room_id, "reason": "review"},
        headers=ADMIN,
    )
    assert held.status_code == 201, held.text
    hold_id: int = held.json()["id"]
    return hold_id


def test_a_held_room_survives_a_project_wide_rule(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    held_room, open_room = _room(client, headers, "held"), _room(client, headers, "open")
    agent = make_agent(app, world.project)
    joined = client.post(
        f"/api/v1/rooms/{held_room['id']}/participants",
        json={"participant_type": "agent", "participant_id": str(agent.id)},
        headers=headers,
    )
    assert joined.status_code == 201
    kept = [_task(client, headers, held_room["id"]) for _ in range(2)]
    gone = [_task(client, headers, open_room["id"]), _task(client, headers, None)]
    with transaction(app) as session:
        session.execute(
            update(Task).values(status="completed", completed_at=utcnow() - timedelta(days=30))
        )
    _hold_room(client, held_room["id"])

    policy = (
        '[[rule]]\nname = "old-tasks"\ntable = "tasks"\nolder_than = "7d"\naction = "delete"\n'
        f'projects = ["{world.project.id}"]\n'
    )
    preview = client.post("/api/v1/admin/retention/preview", json={"policy": policy}, headers=ADMIN)
    assert preview.status_code == 200, preview.text
    rule = preview.json()["rules"][0]
    assert (rule["matched"], rule["held"]) == (2, 2)
    done = client.post(
        "/api/v1/admin/retention/execute",
        json={"policy": policy, "confirm": preview.json()["plan_id"], "force": True, "reason": "t"},
        headers=ADMIN,
    )
    assert done.status_code == 200, done.text
    assert done.json()["rules"][0]["affected"] == 2
    with transaction(app) as session:
        left = {str(t.id): str(t.room_id) for t in session.scalars(select(Task))}
        participants = session.scalars(select(RoomParticipant)).all()
    assert left == {task_id: held_room["id"] for task_id in kept}
    assert [p.participant_id for p in participants] == [agent.id]
    assert not set(gone) & set(left)


def test_delete_paths_refuse_what_a_held_room_keeps(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "held")
    agent = make_agent(app, world.project)
    client.post(
        f"/api/v1/rooms/{room['id']}/participants",
        json={"participant_type": "agent", "participant_id": str(agent.id)},
        headers=headers,
    )
    task_id = _task(client, headers, room["id"])
    hold_id = _hold_room(client, room["id"])
    for path in (
        f"/api/v1/rooms/{room['id']}",
        f"/api/v1/tasks/{task_id}",
        f"/api/v1/agents/{agent.id}",  # its participation in the held room would go
    ):
        refused = client.delete(path, headers=headers)
        assert refused.status_code == 409, (path, refused.text)
        assert "hold" in refused.json()["detail"]
    with transaction(app) as session:
        assert len(session.scalars(select(RoomParticipant)).all()) == 1
        assert session.get(Task, uuid.UUID(task_id)) is not None
    client.post(f"/api/v1/admin/holds/{hold_id}/release", headers=ADMIN)
    assert client.delete(f"/api/v1/rooms/{room['id']}", headers=headers).status_code == 204


def test_restore_never_takes_a_task_out_of_a_held_room(app: FastAPI, client: TestClient) -> None:
    """A restore only fills references a delete emptied: a task that has since moved into a held
    room stays there (a conflict), and the held room's participants stay as they are."""
    world = build_world(app, client)
    headers = world.headers["write_key"]
    first, held = _room(client, headers, "first"), _room(client, headers, "held")
    task_id = _task(client, headers, first["id"])
    assert client.delete(f"/api/v1/rooms/{first['id']}", headers=headers).status_code == 204
    uri = last_audit(client, mode="execute")["archive_uri"]
    moved = client.patch(f"/api/v1/tasks/{task_id}", json={"room_id": held["id"]}, headers=headers)
    assert moved.status_code == 200
    _hold_room(client, held["id"])

    restored = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
    assert restored.status_code == 200, restored.text
    report = restored.json()
    assert report["tables"]["rooms"]["inserted"] == 1
    assert report["conflicts"] == 1
    assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).json()["room_id"] == held["id"]
