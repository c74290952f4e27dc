"""Isolation between projects: another project's ids answer 404 on every route, and never leak."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import (
    build_world,
    make_agent,
    make_connection,
    make_instruction,
    make_session,
    make_task,
)


def test_other_projects_ids_are_404_everywhere(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    # Records of project B (the stranger's); the callers below are all of project A.
    agent = make_agent(app, world.other_project, "theirs")
    task = make_task(app, world.other_project, "theirs")
    session = make_session(app, world.other_project, agent)
    connection = make_connection(app, world.other_project, agent)
    instruction = make_instruction(app, world.other_project, agent)
    calls = [
        ("GET", f"/api/v1/agents/{agent.id}", None),
        ("PATCH", f"/api/v1/agents/{agent.id}", {"nickname": "x"}),
        ("DELETE", f"/api/v1/agents/{agent.id}", None),
        ("GET", f"/api/v1/tasks/{task.id}", None),
        ("PATCH", f"/api/v1/tasks/{task.id}", {"title": "x"}),
        ("DELETE", f"/api/v1/tasks/{task.id}", None),
        ("POST", f"/api/v1/tasks/{task.id}/status", {"status": "in_progress"}),
        ("POST", f"/api/v1/tasks/{task.id}/assign", {"assignee_type": None, "assignee_id": None}),
        ("GET", f"/api/v1/sessions/{session.id}", None),
        ("POST", f"/api/v1/sessions/{session.id}/end", {"status": "completed"}),
        ("GET", f"/api/v1/connections/{connection.id}", None),
        ("POST", f"/api/v1/connections/{connection.id}/heartbeat", None),
        ("POST", f"/api/v1/connections/{connection.id}/close", {"reason": "x"}),
        ("GET", f"/api/v1/instructions/{instruction.id}", None),
        ("PATCH", f"/api/v1/instructions/{instruction.id}", {"status": "sent"}),
        ("GET", f"/api/v1/instructions/{instruction.id}/acknowledgements", None),
        ("POST", f"/api/v1/instructions/{instruction.id}/acknowledgements", {"status": "received"}),
        # References from project A to B's records.
        ("POST", "/api/v1/sessions", {"agent_id": str(agent.id)}),
        ("POST", "/api/v1/connections", {"agent_id": str(agent.id)}),
        ("POST", "/api/v1/instructions", {"agent_id": str(agent.id), "payload": {}}),
        ("POST", "/api/v1/tasks", {"title": "x", "dependencies": [str(task.id)]}),
        (
            "POST",
            "/api/v1/tasks",
            {"title": "x", "assignee_type": "agent", "assignee_id": str(agent.id)},
        ),
    ]
    missing_messages = set()
    for caller in ("owner", "write_key", "admin_scope_key"):
        headers = world.headers[caller]
        for method, url, body in calls:
            if caller == "owner" and method == "POST" and url.count("/") == 3:
                body = {**(body or {}), "project_id": str(world.project.id)}
            response = client.request(method, url, json=body, headers=headers)
            assert response.status_code == 404, (caller, method, url, response.text)
            missing_messages.add(response.json()["detail"])
        for resource in ("agents", "tasks", "sessions", "connections", "instructions"):
            params = {"project_id": str(world.other_project.id)}
            response = client.get(f"/api/v1/{resource}", params=params, headers=headers)
            assert response.status_code == 404, (caller, resource)
            own = client.get(
                f"/api/v1/{resource}", params={"project_id": str(world.project.id)}, headers=headers
            )
            assert own.status_code == 200 and own.json()["items"] == [], (caller, resource)
    # A record of another project reads exactly like one that does not exist.
    unknown = client.get(
        "/api/v1/agents/00000000-0000-0000-0000-000000000000", headers=world.headers["owner"]
    )
    assert unknown.json()["detail"] in missing_messages
    assert "Agent not found." in missing_messages

    # Nothing was changed in project B.
    stranger = world.headers["stranger"]
    assert client.get(f"/api/v1/agents/{agent.id}", headers=stranger).json()["nickname"] is None
    assert client.get(f"/api/v1/tasks/{task.id}", headers=stranger).json()["status"] == "pending"
    assert (
        client.get(f"/api/v1/connections/{connection.id}", headers=stranger).json()["status"]
        == "active"
    )
    assert (
        client.get(f"/api/v1/sessions/{session.id}", headers=stranger).json()["status"] == "active"
    )
