"""API keys: shown once, stored hashed, accepted in two headers, revocable, throttled touches."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from taskledger.store.models import Agent, ApiKey
from taskledger.store.types import utcnow
from tests.helpers import bearer, build_world, make_key, transaction


def _create(client: TestClient, project_id: object, headers: dict[str, str], **body: object):  # type: ignore[no-untyped-def]
    payload = {"name": "ci", "scopes": ["read"], **body}
    return client.post(f"/api/v1/projects/{project_id}/api-keys", json=payload, headers=headers)


def test_secret_shown_once_and_stored_hashed(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = build_world(app, client)
    created = _create(client, world.project.id, world.headers["owner"], scopes=["write", "read"])
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith(f"tl_{body['prefix']}_")
    assert body["scopes"] == ["read", "write"]

    listed = client.get(
        f"/api/v1/projects/{world.project.id}/api-keys", headers=world.headers["owner"]
    )
    assert listed.status_code == 200
    assert secret not in listed.text
    assert all("key" not in item for item in listed.json()["items"])
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": secret}).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(secret)).status_code == 200

    with transaction(app) as session:
        dump = session.execute(text("SELECT * FROM api_keys")).all()
    assert secret not in repr(dump)
    assert secret.split("_", 2)[2] not in repr(dump)
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_revoked_key_stops_at_once(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    created = _create(client, world.project.id, world.headers["admin_scope_key"]).json()
    headers = {"X-API-Key": created["key"]}
    assert client.get("/api/v1/projects", headers=headers).status_code == 200
    url = f"/api/v1/projects/{world.project.id}/api-keys/{created['id']}"
    assert client.delete(url, headers=world.headers["owner"]).status_code == 204
    assert client.delete(url, headers=world.headers["owner"]).status_code == 204  # idempotent
    assert client.get("/api/v1/projects", headers=headers).status_code == 401


@pytest.mark.parametrize("who", ["read_key", "write_key", "stranger", "other_project_key"])
def test_only_owner_superuser_or_admin_scope_manage_keys(
    app: FastAPI, client: TestClient, who: str
) -> None:
    world = build_world(app, client)
    response = _create(client, world.project.id, world.headers[who])
    assert response.status_code == (404 if who in ("stranger", "other_project_key") else 403)


def test_agent_binding_must_be_in_the_project(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    with transaction(app) as session:
        mine = Agent(project_id=world.project.id, name="worker")
        theirs = Agent(project_id=world.other_project.id, name="worker")
        session.add_all([mine, theirs])
    assert (
        _create(
            client, world.project.id, world.headers["owner"], agent_id=str(theirs.id)
        ).status_code
        == 404
    )
    bound = _create(client, world.project.id, world.headers["owner"], agent_id=str(mine.id))
    assert bound.status_code == 201
    key = bound.json()["key"]
    me = client.get("/api/v1/auth/me", headers={"X-API-Key": key}).json()
    assert me["key"]["agent_id"] == str(mine.id)
    with transaction(app) as session:
        session.delete(session.get(Agent, mine.id))
    # Deleting the agent deletes its keys: the key stops authenticating at once.
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    key = make_key(app, world.project, "read")
    prefix = key.split("_")[1]

    def last_used():  # type: ignore[no-untyped-def]
        with transaction(app) as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))

    assert last_used() is None
    client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    first = last_used()
    assert first is not None
    client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert last_used() == first
    with transaction(app) as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == prefix)
            .values(last_used_at=utcnow() - timedelta(minutes=2))
        )
    client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert last_used() > first


@pytest.mark.parametrize(
    "key",
    ["tl_", "tl_abc", "tl_abc_", "tl_deadbeef0000_nope", "nope", "tl_" + "x" * 5000],
)
def test_malformed_or_unknown_keys_are_401(app: FastAPI, client: TestClient, key: str) -> None:
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401


def test_bad_key_requests(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    headers = world.headers["owner"]
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": ""},
        {"name": "x", "scopes": ["read"], "extra": 1},
    ):
        response = client.post(
            f"/api/v1/projects/{world.project.id}/api-keys", json=body, headers=headers
        )
        assert response.status_code == 422, body
