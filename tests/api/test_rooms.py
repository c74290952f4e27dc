"""Rooms: CRUD, paging and filters, participants, room tasks, and the seed-004 delete cascades
through the archive, with restore bringing back what they took."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from taskledger.store.models import ApiKey, RoomParticipant
from tests.api.test_restore_report import ADMIN, last_audit
from tests.helpers import build_world, make_agent, transaction


def _room(client: TestClient, headers: dict[str, str], name: str, **fields: Any) -> Any:
    created = client.post("/api/v1/rooms", json={"name": name, **fields}, headers=headers)
    assert created.status_code == 201, created.text
    return created.json()


def _join(
    client: TestClient, headers: dict[str, str], room_id: str, kind: str, who: Any, **extra: Any
) -> Any:
    return client.post(
        f"/api/v1/rooms/{room_id}/participants",
        json={"participant_type": kind, "participant_id": str(who), **extra},
        headers=headers,
    )


def test_create_read_rename_archive_and_unique_names(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general", topic="daily work")
    assert room["project_id"] == str(world.project.id)
    assert room["topic"] == "daily work" and room["archived_at"] is None
    assert room["created_by"] is None  # a key made it, not a user
    assert client.get(f"/api/v1/rooms/{room['id']}", headers=headers).json() == room

    duplicate = client.post("/api/v1/rooms", json={"name": "general"}, headers=headers)
    assert duplicate.status_code == 409 and "general" in duplicate.json()["detail"]
    other = client.post(
        "/api/v1/rooms",
        json={"name": "general", "project_id": str(world.other_project.id)},
        headers=world.headers["stranger"],
    )
    assert other.status_code == 201
    by_owner = client.post(
        "/api/v1/rooms",
        json={"name": "design", "project_id": str(world.project.id)},
        headers=world.headers["owner"],
    ).json()
    assert by_owner["created_by"] == str(world.owner.id)

    path = f"/api/v1/rooms/{room['id']}"
    renamed = client.patch(path, json={"name": "design"}, headers=headers)
    assert renamed.status_code == 409
    changed = client.patch(path, json={"topic": None, "archived": True}, headers=headers).json()
    assert changed["topic"] is None and changed["archived_at"] is not None
    again = client.patch(path, json={"archived": True}, headers=headers).json()
    assert again["archived_at"] == changed["archived_at"]  # archiving twice keeps the first time
    assert client.patch(path, json={"archived": None}, headers=headers).status_code == 422
    assert client.patch(path, json={"archived": "yes"}, headers=headers).status_code == 422
    reopened = client.patch(path, json={"archived": False}, headers=headers).json()
    assert reopened["archived_at"] is None


def test_list_pages_and_filters(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    made = [_room(client, headers, f"room-{i}")["id"] for i in range(5)]
    client.patch(f"/api/v1/rooms/{made[1]}", json={"archived": True}, headers=headers)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/rooms", params=params, headers=headers).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made

    def ids(**params: Any) -> list[str]:
        response = client.get("/api/v1/rooms", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    assert ids(archived="true") == [made[1]]
    assert ids(archived="false") == [made[0], *made[2:]]
    assert ids(name="room-3") == [made[3]]
    first = client.get("/api/v1/rooms", params={"limit": 1}, headers=headers).json()
    mismatched = client.get(
        "/api/v1/rooms",
        params={"limit": 1, "cursor": first["next_cursor"], "archived": "true"},
        headers=headers,
    )
    assert mismatched.status_code == 400
    # Another project's key sees none of them, and each room is a 404 to it.
    assert client.get("/api/v1/rooms", headers=world.headers["other_project_key"]).json() == {
        "items": [],
        "next_cursor": None,
    }
    for caller in ("other_project_key", "stranger"):
        assert (
            client.get(f"/api/v1/rooms/{made[0]}", headers=world.headers[caller]).status_code == 404
        )


def test_participants_join_leave_and_list(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general")
    agent = make_agent(app, world.project)
    joined = _join(client, headers, room["id"], "agent", agent.id, role="owner")
    assert joined.status_code == 201, joined.text
    body = joined.json()
    assert (body["participant_type"], body["role"], body["left_at"]) == ("agent", "owner", None)
    assert _join(client, headers, room["id"], "agent", agent.id).status_code == 409
    user = _join(client, headers, room["id"], "user", world.owner.id, role="observer")
    assert user.status_code == 201, user.text
    assert _join(client, headers, room["id"], "agent", agent.id, role="boss").status_code == 422

    path = f"/api/v1/rooms/{room['id']}/participants"
    left = client.post(f"{path}/{agent.id}/leave", headers=headers)
    assert left.status_code == 200 and left.json()["left_at"] is not None
    assert client.post(f"{path}/{agent.id}/leave", headers=headers).status_code == 404
    # Leaving keeps the record; the agent may join again as a new participation.
    rejoined = _join(client, headers, room["id"], "agent", agent.id)
    assert rejoined.status_code == 201 and rejoined.json()["id"] != body["id"]

    listed = client.get(path, headers=world.headers["read_key"]).json()["items"]
    assert [p["id"] for p in listed] == [body["id"], user.json()["id"], rejoined.json()["id"]]
    active = client.get(path, params={"active": "true"}, headers=headers).json()["items"]
    assert [p["id"] for p in active] == [user.json()["id"], rejoined.json()["id"]]
    past = client.get(path, params={"active": "false"}, headers=headers).json()["items"]
    assert [p["id"] for p in past] == [body["id"]]
    page = client.get(path, params={"limit": 2}, headers=headers).json()
    rest = client.get(path, params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers)
    assert [p["id"] for p in page["items"] + rest.json()["items"]] == [p["id"] for p in listed]
    assert client.get(path, headers=world.headers["read_key"]).status_code == 200
    assert (
        _join(client, world.headers["read_key"], room["id"], "user", world.owner.id).status_code
        == 403
    )


def test_cross_project_participants_are_refused(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general")
    foreign_agent = make_agent(app, world.other_project)
    refused = _join(client, headers, room["id"], "agent", foreign_agent.id)
    assert refused.status_code == 404 and str(foreign_agent.id) in refused.json()["detail"]
    # A user who cannot see the project is refused the same way; an unknown id too.
    assert _join(client, headers, room["id"], "user", world.stranger.id).status_code == 404
    assert _join(client, headers, room["id"], "agent", uuid.uuid4()).status_code == 404
    # A room of another project is a 404 to join, leave and list, as if it did not exist.
    theirs = _room(
        client, world.headers["stranger"], "theirs", project_id=str(world.other_project.id)
    )
    agent = make_agent(app, world.project)
    assert _join(client, headers, theirs["id"], "agent", agent.id).status_code == 404
    path = f"/api/v1/rooms/{theirs['id']}/participants"
    assert client.get(path, headers=headers).status_code == 404
    assert client.post(f"{path}/{agent.id}/leave", headers=headers).status_code == 404
    assert client.get(f"/api/v1/rooms/{theirs['id']}/tasks", headers=headers).status_code == 404
    with transaction(app) as session:
        assert session.scalars(select(RoomParticipant)).all() == []


def test_tasks_in_rooms(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general")
    other_room = _room(client, headers, "other")
    inside = client.post(
        "/api/v1/tasks", json={"title": "in", "room_id": room["id"]}, headers=headers
    )
    assert inside.status_code == 201, inside.text
    assert inside.json()["room_id"] == room["id"]
    outside = client.post("/api/v1/tasks", json={"title": "out"}, headers=headers).json()
    assert outside["room_id"] is None
    moved = client.patch(
        f"/api/v1/tasks/{outside['id']}", json={"room_id": other_room["id"]}, headers=headers
    )
    assert moved.status_code == 200 and moved.json()["room_id"] == other_room["id"]

    listed = client.get("/api/v1/tasks", params={"room_id": room["id"]}, headers=headers).json()
    assert [t["id"] for t in listed["items"]] == [inside.json()["id"]]
    in_room = client.get(f"/api/v1/rooms/{room['id']}/tasks", headers=headers).json()
    assert in_room == listed

    # A room of another project is a 404; an archived room refuses new tasks (409).
    theirs = _room(
        client, world.headers["stranger"], "theirs", project_id=str(world.other_project.id)
    )
    foreign = client.post(
        "/api/v1/tasks", json={"title": "x", "room_id": theirs["id"]}, headers=headers
    )
    assert foreign.status_code == 404
    client.patch(f"/api/v1/rooms/{room['id']}", json={"archived": True}, headers=headers)
    archived = client.post(
        "/api/v1/tasks", json={"title": "x", "room_id": room["id"]}, headers=headers
    )
    assert archived.status_code == 409 and "archived" in archived.json()["detail"]
    move_in = client.patch(
        f"/api/v1/tasks/{outside['id']}", json={"room_id": room["id"]}, headers=headers
    )
    assert move_in.status_code == 409
    # Tasks already in the archived room stay, and may leave it.
    out = client.patch(
        f"/api/v1/tasks/{inside.json()['id']}", json={"room_id": None}, headers=headers
    )
    assert out.status_code == 200 and out.json()["room_id"] is None
    agent = make_agent(app, world.project)
    assert _join(client, headers, room["id"], "agent", agent.id).status_code == 409


def test_deleting_a_room_unsets_its_tasks_and_removes_participants_restorably(
    app: FastAPI, client: TestClient
) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general")
    agent = make_agent(app, world.project)
    assert _join(client, headers, room["id"], "agent", agent.id).status_code == 201
    assert _join(client, headers, room["id"], "user", world.owner.id).status_code == 201
    task = client.post("/api/v1/tasks", json={"title": "t", "room_id": room["id"]}, headers=headers)
    task_id = task.json()["id"]
    participants = client.get(f"/api/v1/rooms/{room['id']}/participants", headers=headers).json()

    assert client.delete(f"/api/v1/rooms/{room['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/rooms/{room['id']}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).json()["room_id"] is None
    with transaction(app) as session:
        assert session.scalars(select(RoomParticipant)).all() == []
    audit = last_audit(client, mode="execute")
    assert audit["policy_name"] == "api-delete-rooms" and audit["archive_uri"]

    restored = client.post(
        "/api/v1/admin/restore", json={"uri": audit["archive_uri"]}, headers=ADMIN
    )
    assert restored.status_code == 200, restored.text
    assert client.get(f"/api/v1/rooms/{room['id']}", headers=headers).json() == room
    assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).json()["room_id"] == room["id"]
    after = client.get(f"/api/v1/rooms/{room['id']}/participants", headers=headers).json()
    assert after == participants


def test_deleting_an_agent_removes_its_keys_and_participations_and_restore_brings_both(
    app: FastAPI, client: TestClient
) -> None:
    """The seed-004 scenario: delete an agent, verify the cascade to API keys and participants."""
    world = build_world(app, client)
    headers = world.headers["admin_scope_key"]
    room = _room(client, headers, "general")
    second = _room(client, headers, "second")
    agent = make_agent(app, world.project)
    bystander = make_agent(app, world.project)
    key = client.post(
        f"/api/v1/projects/{world.project.id}/api-keys",
        json={"name": "agent-key", "scopes": ["read"], "agent_id": str(agent.id)},
        headers=headers,
    )
    assert key.status_code == 201, key.text
    for room_id in (room["id"], second["id"]):
        assert _join(client, headers, room_id, "agent", agent.id).status_code == 201
    assert _join(client, headers, room["id"], "agent", bystander.id).status_code == 201
    before = {
        r: client.get(f"/api/v1/rooms/{r}/participants", headers=headers).json()
        for r in (room["id"], second["id"])
    }

    assert client.delete(f"/api/v1/agents/{agent.id}", headers=headers).status_code == 204
    with transaction(app) as session:
        assert session.scalars(select(ApiKey).where(ApiKey.agent_id == agent.id)).all() == []
        left = session.scalars(select(RoomParticipant)).all()
        assert [p.participant_id for p in left] == [bystander.id]
    uri = last_audit(client, mode="execute")["archive_uri"]
    restored = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
    assert restored.status_code == 200, restored.text
    report = restored.json()
    assert report["tables"]["room_participants"]["inserted"] == 2
    assert report["tables"]["api_keys"]["inserted"] == 1
    for room_id, page in before.items():
        assert client.get(f"/api/v1/rooms/{room_id}/participants", headers=headers).json() == page
    with transaction(app) as session:
        assert len(session.scalars(select(ApiKey).where(ApiKey.agent_id == agent.id)).all()) == 1


def test_deleting_a_project_takes_its_rooms_through_the_archive(
    app: FastAPI, client: TestClient
) -> None:
    world = build_world(app, client)
    owner = world.headers["owner"]
    general = _room(client, world.headers["write_key"], "general")
    quiet = _room(client, world.headers["write_key"], "quiet")
    client.patch(f"/api/v1/rooms/{quiet['id']}", json={"archived": True}, headers=owner)
    assert _join(client, owner, general["id"], "user", world.owner.id).status_code == 201
    elsewhere = _room(
        client, world.headers["stranger"], "general", project_id=str(world.other_project.id)
    )

    # A hold on one of its rooms keeps the project and every room.
    held = client.post(
        "/api/v1/admin/holds",
        json={"scope": "room", "target_id": general["id"], "reason": "review"},
        headers=ADMIN,
    )
    assert held.status_code == 201, held.text
    refused = client.delete(f"/api/v1/projects/{world.project.id}", headers=owner)
    assert refused.status_code == 409 and "hold" in refused.json()["detail"]
    assert client.get(f"/api/v1/rooms/{general['id']}", headers=owner).status_code == 200
    client.post(f"/api/v1/admin/holds/{held.json()['id']}/release", headers=ADMIN)

    assert client.delete(f"/api/v1/projects/{world.project.id}", headers=owner).status_code == 204
    assert client.get(f"/api/v1/projects/{world.project.id}", headers=owner).status_code == 404
    with transaction(app) as session:
        assert session.scalars(select(RoomParticipant)).all() == []
    audit = last_audit(client, mode="execute")
    assert audit["policy_name"] == "api-delete-rooms" and audit["archive_uri"]
    assert audit["counts"]["rules"][0]["affected"] == 2
    stranger = world.headers["stranger"]
    assert client.get(f"/api/v1/rooms/{elsewhere['id']}", headers=stranger).json() == elsewhere
    # With the project gone, a restore names the rooms and participations as orphaned.
    report = client.post("/api/v1/admin/restore", json={"uri": audit["archive_uri"]}, headers=ADMIN)
    assert report.status_code == 200, report.text
    assert report.json()["tables"]["rooms"]["orphaned"] == 2
    assert report.json()["tables"]["room_participants"]["orphaned"] == 1


def test_a_project_with_other_records_keeps_its_rooms(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    room = _room(client, headers, "general")
    client.post("/api/v1/tasks", json={"title": "t"}, headers=headers)
    refused = client.delete(f"/api/v1/projects/{world.project.id}", headers=world.headers["owner"])
    assert refused.status_code == 409 and "tasks" in refused.json()["detail"]
    assert client.get(f"/api/v1/rooms/{room['id']}", headers=headers).json() == room
    assert (
        client.get("/api/v1/admin/retention/runs?mode=execute", headers=ADMIN).json()["items"] == []
    )
