"""Projects: ownership, visibility (404 for others), renames, hand-over, safe deletion."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.store.models import Run
from tests.helpers import bearer, build_world, login, make_user, transaction


def test_creator_owns_and_sees_only_own(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    created = client.post(
        "/api/v1/projects", json={"name": "gamma"}, headers=world.headers["owner"]
    )
    assert created.status_code == 201
    assert created.json()["owner_id"] == str(world.owner.id)

    def names(who):
        return {
            p["name"]
            for p in client.get("/api/v1/projects", headers=world.headers[who]).json()["items"]
        }

    assert names("owner") == {"alpha", "gamma"}
    assert names("stranger") == {"beta"}
    assert names("superuser") == {"alpha", "beta", "gamma"}
    assert names("read_key") == {"alpha"}

    other = client.get(f"/api/v1/projects/{world.other_project.id}", headers=world.headers["owner"])
    assert other.status_code == 404
    duplicate = client.post(
        "/api/v1/projects", json={"name": "beta"}, headers=world.headers["owner"]
    )
    assert duplicate.status_code == 409


def test_keys_cannot_create_projects(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    response = client.post(
        "/api/v1/projects", json={"name": "by-key"}, headers=world.headers["admin_scope_key"]
    )
    assert response.status_code == 403


def test_rename_and_hand_over(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    url = f"/api/v1/projects/{world.project.id}"
    assert (
        client.patch(url, json={"name": "beta"}, headers=world.headers["owner"]).status_code == 409
    )
    renamed = client.patch(url, json={"name": "alpha-2"}, headers=world.headers["owner"])
    assert renamed.status_code == 200 and renamed.json()["name"] == "alpha-2"
    newcomer = make_user(app)
    handed = client.patch(url, json={"owner_id": str(newcomer.id)}, headers=world.headers["owner"])
    assert handed.status_code == 200
    # The previous owner no longer sees it; the new owner does.
    assert client.get(url, headers=world.headers["owner"]).status_code == 404
    assert client.get(url, headers=bearer(login(client, newcomer.email))).status_code == 200


def test_delete_refuses_a_project_with_history(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    with transaction(app) as session:
        session.add(Run(project_id=world.project.id, task="t", run_id="1", status="completed"))
    url = f"/api/v1/projects/{world.project.id}"
    refused = client.delete(url, headers=world.headers["owner"])
    assert refused.status_code == 409
    assert "runs" in refused.json()["detail"]
    assert client.get(url, headers=world.headers["owner"]).status_code == 200

    empty = client.post("/api/v1/projects", json={"name": "empty"}, headers=world.headers["owner"])
    empty_url = f"/api/v1/projects/{empty.json()['id']}"
    assert client.delete(empty_url, headers=world.headers["owner"]).status_code == 204
    assert client.get(empty_url, headers=world.headers["owner"]).status_code == 404
