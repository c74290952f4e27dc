"""Agents: unique names per project, filters, paging, partial updates, and the delete cascade."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from taskledger.enums import HoldScope
from taskledger.retention.archive.reader import read_manifest, verify
from taskledger.retention.plan import holds
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    ApiKey,
    Instruction,
    RetentionRun,
    Run,
    Task,
)
from tests.helpers import build_world, make_agent, make_key, make_task, transaction


def test_create_read_and_unique_names(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["write_key"]
    body = {"name": "planner", "agent_type": "llm", "capabilities": ["plan"], "config": {"t": 1}}
    created = client.post("/api/v1/agents", json=body, headers=headers)
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["project_id"] == str(world.project.id)
    assert agent["status"] == "offline" and agent["is_active"] is True
    assert agent["capabilities"] == ["plan"] and agent["config"] == {"t": 1}
    assert client.get(f"/api/v1/agents/{agent['id']}", headers=headers).json() == agent

    duplicate = client.post("/api/v1/agents", json={"name": "planner"}, headers=headers)
    assert duplicate.status_code == 409
    assert "planner" in duplicate.json()["detail"]
    # The same name in another project is fine.
    other = client.post(
        "/api/v1/agents",
        json={"name": "planner", "project_id": str(world.other_project.id)},
        headers=world.headers["stranger"],
    )
    assert other.status_code == 201


def test_users_name_the_project(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    owner = world.headers["owner"]
    assert client.post("/api/v1/agents", json={"name": "a"}, headers=owner).status_code == 422
    assert client.get("/api/v1/agents", headers=owner).status_code == 422
    created = client.post(
        "/api/v1/agents", json={"name": "a", "project_id": str(world.project.id)}, headers=owner
    )
    assert created.status_code == 201
    listed = client.get(
        "/api/v1/agents", params={"project_id": str(world.project.id)}, headers=owner
    )
    assert [a["name"] for a in listed.json()["items"]] == ["a"]


def test_filters(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    make_agent(app, world.project, "a1", status="online", agent_type="llm")
    make_agent(app, world.project, "a2", status="busy", agent_type="llm", is_active=False)
    make_agent(app, world.project, "a3", agent_type="tool")
    headers = world.headers["read_key"]

    def names(**params: str) -> list[str]:
        response = client.get("/api/v1/agents", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [a["name"] for a in response.json()["items"]]

    assert names() == ["a1", "a2", "a3"]
    assert names(status="online") == ["a1"]
    assert names(is_active="false") == ["a2"]
    assert names(agent_type="llm") == ["a1", "a2"]
    assert names(agent_type="llm", is_active="true") == ["a1"]
    for bad in ({"status": "sleeping"}, {"is_active": "maybe"}, {"agent_type": "a\x00"}):
        assert client.get("/api/v1/agents", params=bad, headers=headers).status_code == 422


def test_paging_and_cursor_misuse(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    for i in range(7):
        make_agent(app, world.project, f"a{i}", agent_type="llm")
    headers = world.headers["read_key"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", "agent_type": "llm", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/agents", params=params, headers=headers).json()
        seen += [a["name"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"a{i}" for i in range(7)]

    first = client.get("/api/v1/agents", params={"limit": "3"}, headers=headers).json()
    misused = client.get(
        "/api/v1/agents",
        params={"limit": "3", "cursor": first["next_cursor"], "agent_type": "llm"},
        headers=headers,
    )
    assert misused.status_code == 400
    broken = client.get("/api/v1/agents", params={"cursor": "not-a-cursor"}, headers=headers)
    assert broken.status_code == 400
    assert (
        client.get("/api/v1/agents", params={"limit": "1001"}, headers=headers).status_code == 422
    )


def test_partial_update(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project, "a", nickname="nick", config={"x": 1})
    make_agent(app, world.project, "taken")
    headers = world.headers["write_key"]
    url = f"/api/v1/agents/{agent.id}"

    changed = client.patch(url, json={"status": "busy", "nickname": None}, headers=headers)
    assert changed.status_code == 200
    body = changed.json()
    assert body["status"] == "busy" and body["nickname"] is None
    assert body["config"] == {"x": 1} and body["name"] == "a"  # untouched

    assert client.patch(url, json={"name": "taken"}, headers=headers).status_code == 409
    assert client.patch(url, json={"name": "a"}, headers=headers).status_code == 200  # unchanged
    for bad in (
        {"name": None},
        {"status": "asleep"},
        {"is_active": "perhaps"},
        {"capabilities": "plan"},
        {"unknown": 1},
    ):
        assert client.patch(url, json=bad, headers=headers).status_code == 422, bad
    assert client.patch(url, json={}, headers=world.headers["read_key"]).status_code == 403


def test_delete_cascades_and_keeps_history(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project, "doomed")
    survivor = make_agent(app, world.project, "survivor")
    bound_key = make_key(app, world.project, "write", agent_id=agent.id)
    bound = {"X-API-Key": bound_key}
    assert client.get("/api/v1/auth/me", headers=bound).status_code == 200

    # Records made through the API with the agent's own key.
    session_id = client.post(
        "/api/v1/sessions", json={"agent_id": str(agent.id)}, headers=bound
    ).json()["id"]
    connection = client.post(
        "/api/v1/connections",
        json={"agent_id": str(agent.id), "session_id": session_id},
        headers=bound,
    )
    assert connection.status_code == 201
    instruction_id = client.post(
        "/api/v1/instructions",
        json={"agent_id": str(agent.id), "payload": {"go": 1}, "session_id": session_id},
        headers=bound,
    ).json()["id"]
    ack = client.post(
        f"/api/v1/instructions/{instruction_id}/acknowledgements",
        json={"status": "accepted"},
        headers=bound,
    )
    assert ack.status_code == 201
    assigned = make_task(app, world.project, "mine", assignee_type="agent", assignee_id=agent.id)
    theirs = make_task(app, world.project, "theirs", assignee_type="agent", assignee_id=survivor.id)
    with transaction(app) as session:
        session.add(
            Run(
                project_id=world.project.id,
                agent_id=agent.id,
                task="t",
                run_id="r",
                status="queued",
            )
        )

    response = client.delete(f"/api/v1/agents/{agent.id}", headers=world.headers["write_key"])
    assert response.status_code == 204
    assert (
        client.get(f"/api/v1/agents/{agent.id}", headers=world.headers["owner"]).status_code == 404
    )
    # The bound key went with the agent: it stops authenticating at once.
    assert client.get("/api/v1/auth/me", headers=bound).status_code == 401

    with transaction(app) as session:

        def count(model: type, *where: object) -> int:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

        assert count(ApiKey, ApiKey.agent_id == agent.id) == 0
        assert count(AgentSession) == 0
        assert count(AgentConnection) == 0
        # History stays, unattributed.
        assert session.scalars(select(Run.agent_id)).all() == [None]
        kept = session.get(Instruction, uuid.UUID(instruction_id))
        assert kept is not None and kept.agent_id is None and kept.session_id is None
        assert session.scalars(select(Acknowledgement.agent_id)).all() == [None]
        mine = session.get(Task, assigned.id)
        assert mine is not None and mine.assigned_to is None and mine.assigned_to_type is None
        other = session.get(Task, theirs.id)
        assert other is not None and other.assigned_to == survivor.id
        assert session.get(Agent, survivor.id) is not None


def test_deleting_an_agent_archives_what_it_takes_and_respects_holds(
    app: FastAPI, client: TestClient
) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project, "archived")
    guarded = make_agent(app, world.project, "guarded")
    make_key(app, world.project, "read", agent_id=agent.id)
    for who in (agent, guarded):
        session_id = client.post(
            "/api/v1/sessions", json={"agent_id": str(who.id)}, headers=world.headers["write_key"]
        ).json()["id"]
        client.post(
            "/api/v1/connections",
            json={"agent_id": str(who.id), "session_id": session_id},
            headers=world.headers["write_key"],
        )
    make_task(app, world.project, "mine", assignee_type="agent", assignee_id=agent.id)
    with transaction(app) as session:
        session.add(
            Run(
                project_id=world.project.id,
                agent_id=agent.id,
                task="t",
                run_id="r",
                status="queued",
            )
        )
        session.add(
            Run(
                project_id=world.project.id,
                agent_id=guarded.id,
                task="t",
                run_id="g",
                status="queued",
            )
        )
    with transaction(app) as session:
        held_run = session.scalars(select(Run.id).where(Run.run_id == "g")).one()
        holds.add_hold(
            session, scope=HoldScope.RUN, target_id=str(held_run), reason="audit", actor="t"
        )

    # A hold on one of its runs protects the agent: deleting it would change that run.
    refused = client.delete(f"/api/v1/agents/{guarded.id}", headers=world.headers["write_key"])
    assert refused.status_code == 409 and "hold" in refused.json()["detail"]

    assert (
        client.delete(f"/api/v1/agents/{agent.id}", headers=world.headers["write_key"]).status_code
        == 204
    )
    with transaction(app) as session:
        audit = session.scalars(
            select(RetentionRun).where(RetentionRun.policy_name == "api-delete-agents")
        ).all()
    assert [(a.trigger, a.outcome) for a in audit] == [("api", "ok")]
    manifest = read_manifest(audit[0].archive_uri or "")
    parts = {(p.table, p.action): p.rows for p in manifest.files}
    assert parts == {
        ("api_keys", "cascade"): 1,
        ("agent_sessions", "cascade"): 1,
        ("agent_connections", "cascade"): 1,
        ("runs", "unlink"): 1,
        ("tasks", "unlink"): 1,
        ("agents", "delete"): 1,
    }
    assert verify(audit[0].archive_uri or "").ok
