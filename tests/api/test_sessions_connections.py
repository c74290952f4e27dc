"""Sessions (start, end once) and connections (open, heartbeat, close) over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update

from taskledger.store.models import Agent, AgentConnection
from taskledger.store.types import utcnow
from tests.helpers import build_world, make_agent, make_connection, make_session, transaction


def test_session_lifecycle(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    headers = world.headers["write_key"]
    created = client.post(
        "/api/v1/sessions",
        json={"agent_id": str(agent.id), "experimental_parameters": {"temperature": 0.2}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "active" and body["ended_at"] is None
    assert body["experimental_parameters"] == {"temperature": 0.2}
    url = f"/api/v1/sessions/{body['id']}"
    assert client.get(url, headers=world.headers["read_key"]).json() == body

    for bad in (
        {"status": "active"},
        {"status": "finished"},
        {"status": "completed", "ended_at": "2030-01-01T00:00:00"},
        {"status": "completed", "extra": 1},
    ):
        assert client.post(f"{url}/end", json=bad, headers=headers).status_code == 422, bad
    too_early = client.post(
        f"{url}/end",
        json={"status": "error", "ended_at": "2000-01-01T00:00:00Z"},
        headers=headers,
    )
    assert too_early.status_code == 422

    ended_at = (utcnow() + timedelta(minutes=5)).isoformat()
    ended = client.post(
        f"{url}/end", json={"status": "terminated", "ended_at": ended_at}, headers=headers
    )
    assert ended.status_code == 200
    assert ended.json()["status"] == "terminated"
    assert ended.json()["ended_at"].replace("Z", "+00:00") == ended_at
    again = client.post(f"{url}/end", json={"status": "completed"}, headers=headers)
    assert again.status_code == 409

    other = make_session(app, world.project, agent)
    by_default = client.post(
        f"/api/v1/sessions/{other.id}/end", json={"status": "completed"}, headers=headers
    )
    assert by_default.json()["ended_at"] is not None


def test_session_list_filters_and_references(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    first, second = make_agent(app, world.project), make_agent(app, world.project)
    one = make_session(app, world.project, first)
    two = make_session(app, world.project, second)
    headers = world.headers["write_key"]
    client.post(f"/api/v1/sessions/{two.id}/end", json={"status": "completed"}, headers=headers)

    def ids(**params: str) -> list[str]:
        response = client.get("/api/v1/sessions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert ids() == [str(one.id), str(two.id)]
    assert ids(agent_id=str(first.id)) == [str(one.id)]
    assert ids(status="completed") == [str(two.id)]
    assert (
        client.get("/api/v1/sessions", params={"status": "x"}, headers=headers).status_code == 422
    )

    foreign = make_agent(app, world.other_project)
    for agent_id in (str(foreign.id), "00000000-0000-0000-0000-000000000000"):
        response = client.post("/api/v1/sessions", json={"agent_id": agent_id}, headers=headers)
        assert response.status_code == 404
    assert client.post("/api/v1/sessions", json={}, headers=headers).status_code == 422


def test_heartbeats_move_connection_and_agent(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project, status="offline")
    busy = make_agent(app, world.project, status="busy")
    headers = world.headers["write_key"]

    opened = client.post("/api/v1/connections", json={"agent_id": str(agent.id)}, headers=headers)
    assert opened.status_code == 201, opened.text
    connection = opened.json()
    assert connection["status"] == "active" and connection["last_heartbeat_at"] is not None
    seen = client.get(f"/api/v1/agents/{agent.id}", headers=headers).json()
    assert seen["status"] == "online"  # opening is the first sign of life
    assert seen["last_heartbeat_at"] == connection["last_heartbeat_at"]

    # Pretend both went quiet an hour ago; a heartbeat brings both to now.
    hour_ago = utcnow() - timedelta(hours=1)
    with transaction(app) as session:
        session.execute(update(AgentConnection).values(last_heartbeat_at=hour_ago))
        session.execute(
            update(Agent)
            .where(Agent.id == agent.id)
            .values(last_heartbeat_at=hour_ago, status="offline")
        )
    before = utcnow()
    beat = client.post(f"/api/v1/connections/{connection['id']}/heartbeat", headers=headers)
    assert beat.status_code == 200
    beat_at = beat.json()["last_heartbeat_at"]
    assert beat_at >= before.isoformat().replace("+00:00", "Z")
    agent_after = client.get(f"/api/v1/agents/{agent.id}", headers=headers).json()
    assert agent_after["last_heartbeat_at"] == beat_at
    assert agent_after["status"] == "online"

    busy_connection = make_connection(app, world.project, busy)
    client.post(f"/api/v1/connections/{busy_connection.id}/heartbeat", headers=headers)
    assert client.get(f"/api/v1/agents/{busy.id}", headers=headers).json()["status"] == "busy"


def test_heartbeat_is_two_updates(app: FastAPI, client: TestClient, engine: Engine) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    connection = make_connection(app, world.project, agent)
    headers = world.headers["write_key"]
    client.get("/api/v1/auth/me", headers=headers)  # the key's last_used_at is written now
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(" ".join(args[2].split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.post(f"/api/v1/connections/{connection.id}/heartbeat", headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    updates = [s.split(" SET ")[0] for s in statements if s.startswith("UPDATE")]
    assert updates == ["UPDATE agent_connections", "UPDATE agents"]
    # The agent is never loaded and saved back.
    assert not [s for s in statements if s.startswith("SELECT") and " FROM agents" in s]


def test_close_and_what_follows(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    first = make_connection(app, world.project, agent)
    second = make_connection(app, world.project, agent)
    headers = world.headers["write_key"]

    def agent_status() -> str:
        status: str = client.get(f"/api/v1/agents/{agent.id}", headers=headers).json()["status"]
        return status

    closed = client.post(
        f"/api/v1/connections/{first.id}/close", json={"reason": "shutdown"}, headers=headers
    )
    assert closed.status_code == 200
    body = closed.json()
    assert body["status"] == "closed" and body["close_reason"] == "shutdown"
    assert body["closed_at"] is not None
    assert agent_status() == "online"  # still connected through the second
    assert (
        client.post(f"/api/v1/connections/{first.id}/heartbeat", headers=headers).status_code == 409
    )
    again = client.post(
        f"/api/v1/connections/{first.id}/close", json={"reason": "again"}, headers=headers
    )
    assert again.status_code == 409
    client.post(f"/api/v1/connections/{second.id}/close", json={"reason": "bye"}, headers=headers)
    assert agent_status() == "offline"

    with transaction(app) as session:  # the retention engine expires stale connections
        session.execute(update(AgentConnection).values(status="timeout"))
    timed_out = client.post(f"/api/v1/connections/{second.id}/heartbeat", headers=headers)
    assert timed_out.status_code == 409
    assert "timeout" in timed_out.json()["detail"]

    for bad in ({}, {"reason": ""}, {"reason": "x" * 256}, {"reason": 5}):
        response = client.post(f"/api/v1/connections/{first.id}/close", json=bad, headers=headers)
        assert response.status_code == 422, bad


def test_connection_sessions_filters_and_ids(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent, other_agent = make_agent(app, world.project), make_agent(app, world.project)
    own_session = make_session(app, world.project, agent)
    their_session = make_session(app, world.project, other_agent)
    headers = world.headers["write_key"]

    def open_(**body: Any) -> Any:
        return client.post("/api/v1/connections", json=body, headers=headers)

    inside = open_(agent_id=str(agent.id), session_id=str(own_session.id))
    assert inside.status_code == 201 and inside.json()["session_id"] == str(own_session.id)
    assert open_(agent_id=str(agent.id), session_id=str(their_session.id)).status_code == 422
    foreign_session = make_session(app, world.other_project, make_agent(app, world.other_project))
    assert open_(agent_id=str(agent.id), session_id=str(foreign_session.id)).status_code == 404
    client.post(
        f"/api/v1/sessions/{own_session.id}/end", json={"status": "completed"}, headers=headers
    )
    assert open_(agent_id=str(agent.id), session_id=str(own_session.id)).status_code == 409

    loose = open_(agent_id=str(other_agent.id)).json()
    client.post(f"/api/v1/connections/{loose['id']}/close", json={"reason": "r"}, headers=headers)

    def ids(**params: str) -> list[int]:
        response = client.get("/api/v1/connections", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    first_id = inside.json()["id"]
    assert ids() == [first_id, loose["id"]]
    assert ids(status="active") == [first_id]
    assert ids(status="closed") == [loose["id"]]
    assert ids(agent_id=str(other_agent.id)) == [loose["id"]]
    assert ids(session_id=str(own_session.id)) == [first_id]
    page = client.get("/api/v1/connections", params={"limit": "1"}, headers=headers).json()
    assert [c["id"] for c in page["items"]] == [first_id]
    rest = client.get(
        "/api/v1/connections", params={"limit": "1", "cursor": page["next_cursor"]}, headers=headers
    ).json()
    assert [c["id"] for c in rest["items"]] == [loose["id"]] and rest["next_cursor"] is None
    misused = client.get(
        "/api/v1/connections",
        params={"status": "active", "cursor": page["next_cursor"]},
        headers=headers,
    )
    assert misused.status_code == 400

    for bad in ("abc", "0", "-1", str(2**63), "1.5"):
        assert client.get(f"/api/v1/connections/{bad}", headers=headers).status_code == 422, bad
        response = client.post(f"/api/v1/connections/{bad}/heartbeat", headers=headers)
        assert response.status_code == 422
    assert client.get("/api/v1/connections/999999", headers=headers).status_code == 404
    assert (
        client.get("/api/v1/connections", params={"status": "open"}, headers=headers).status_code
        == 422
    )
