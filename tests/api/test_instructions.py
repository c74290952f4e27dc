"""Instructions and acknowledgements, including what a key bound to an agent may answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import build_world, make_agent, make_instruction, make_key, make_session


def test_send_update_and_list(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    headers = world.headers["write_key"]
    body = {
        "agent_id": str(agent.id),
        "payload": {"command": "collect", "args": [1, 2]},
        "metadata": {"origin": "planner"},
        "expires_at": "2030-01-01T00:00:00+01:00",
    }
    created = client.post("/api/v1/instructions", json=body, headers=headers)
    assert created.status_code == 201, created.text
    instruction = created.json()
    assert instruction["status"] == "pending"
    assert instruction["payload"] == body["payload"]
    assert instruction["metadata"] == {"origin": "planner"}
    assert instruction["expires_at"] == "2029-12-31T23:00:00Z"
    url = f"/api/v1/instructions/{instruction['id']}"
    assert client.get(url, headers=world.headers["read_key"]).json() == instruction

    sent = client.patch(url, json={"status": "sent"}, headers=headers).json()
    assert sent["status"] == "sent" and sent["metadata"] == {"origin": "planner"}
    cleared = client.patch(url, json={"metadata": None}, headers=headers).json()
    assert cleared["metadata"] is None and cleared["status"] == "sent"
    for bad in ({"status": None}, {"status": "lost"}, {"payload": {}}, {"metadata": [1]}):
        assert client.patch(url, json=bad, headers=headers).status_code == 422, bad

    other = make_instruction(app, world.project, make_agent(app, world.project))

    def ids(**params: str) -> list[str]:
        response = client.get("/api/v1/instructions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert ids() == [instruction["id"], str(other.id)]
    assert ids(status="pending") == [str(other.id)]
    assert ids(agent_id=str(agent.id)) == [instruction["id"]]
    assert (
        client.get("/api/v1/instructions", params={"status": "x"}, headers=headers).status_code
        == 422
    )


def test_bad_instructions(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    other_agent = make_agent(app, world.project)
    headers = world.headers["write_key"]
    other_session = make_session(app, world.project, other_agent)
    foreign = make_agent(app, world.other_project)

    def post(**body: Any) -> int:
        response = client.post("/api/v1/instructions", json=body, headers=headers)
        return response.status_code

    assert post(payload={}) == 422  # no agent
    assert post(agent_id=str(agent.id)) == 422  # no payload
    assert post(agent_id=str(agent.id), payload={}, expires_at="2030-01-01T00:00:00") == 422
    assert post(agent_id=str(agent.id), payload={}, metadata="x") == 422
    assert post(agent_id=str(agent.id), payload={}, priority=1) == 422
    assert post(agent_id=str(foreign.id), payload={}) == 404
    assert post(agent_id=str(agent.id), payload={}, session_id=str(other_session.id)) == 422
    assert post(agent_id=str(other_agent.id), payload={}, session_id=str(other_session.id)) == 201
    assert post(agent_id=str(agent.id), payload=None) == 201  # any JSON value, null included


def test_acknowledgements(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    agent = make_agent(app, world.project)
    other_agent = make_agent(app, world.project)
    instruction = make_instruction(app, world.project, agent)
    theirs = make_instruction(app, world.project, other_agent)
    bound = {"X-API-Key": make_key(app, world.project, "write", agent_id=agent.id)}
    bound_reader = {"X-API-Key": make_key(app, world.project, "read", agent_id=agent.id)}
    url = f"/api/v1/instructions/{instruction.id}/acknowledgements"

    by_agent = client.post(url, json={"status": "received"}, headers=bound)
    assert by_agent.status_code == 201, by_agent.text
    assert by_agent.json()["agent_id"] == str(agent.id)
    by_writer = client.post(
        url, json={"status": "completed", "message": "done"}, headers=world.headers["write_key"]
    )
    assert by_writer.json()["agent_id"] == str(agent.id)  # on behalf of the instruction's agent
    by_owner = client.post(url, json={"status": "accepted"}, headers=world.headers["owner"])
    assert by_owner.status_code == 201

    # A bound key speaks for its own agent only; a read-only key not at all.
    wrong_agent = client.post(
        f"/api/v1/instructions/{theirs.id}/acknowledgements",
        json={"status": "received"},
        headers=bound,
    )
    assert wrong_agent.status_code == 403
    assert client.post(url, json={"status": "received"}, headers=bound_reader).status_code == 403
    assert (
        client.post(url, json={"status": "received"}, headers=world.headers["read_key"]).status_code
        == 403
    )
    for bad in ({}, {"status": "ok"}, {"status": "received", "agent_id": str(other_agent.id)}):
        assert client.post(url, json=bad, headers=bound).status_code == 422, bad

    listed = client.get(url, headers=bound_reader)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [a["status"] for a in items] == ["received", "completed", "accepted"]
    assert items[1]["message"] == "done"
    assert all(a["instruction_id"] == str(instruction.id) for a in items)
    page = client.get(url, params={"limit": "2"}, headers=bound_reader).json()
    rest = client.get(
        url, params={"limit": "2", "cursor": page["next_cursor"]}, headers=bound_reader
    )
    assert [a["status"] for a in rest.json()["items"]] == ["accepted"]
    elsewhere = client.get(
        f"/api/v1/instructions/{theirs.id}/acknowledgements",
        params={"cursor": page["next_cursor"]},
        headers=bound_reader,
    )
    assert elsewhere.status_code == 400  # a cursor belongs to one instruction's list
