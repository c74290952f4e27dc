"""User management is for superusers, and never locks everyone out."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import bearer, login, make_user


def test_superuser_manages_users(app: FastAPI, client: TestClient) -> None:
    root = make_user(app, "root@example.com", superuser=True)
    headers = bearer(login(client, root.email))
    created = client.post(
        "/api/v1/users",
        json={"email": "New@Example.com", "password": "long enough pw"},
        headers=headers,
    )
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == "new@example.com"
    assert user["is_superuser"] is False and user["is_active"] is True
    assert "password" not in created.text and "hash" not in created.text

    again = client.post(
        "/api/v1/users",
        json={"email": "new@example.com", "password": "long enough pw"},
        headers=headers,
    )
    assert again.status_code == 409

    fetched = client.get(f"/api/v1/users/{user['id']}", headers=headers)
    assert fetched.json()["email"] == "new@example.com"

    page = client.get("/api/v1/users", params={"limit": 1}, headers=headers).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = client.get(
        "/api/v1/users", params={"limit": 1, "cursor": page["next_cursor"]}, headers=headers
    ).json()
    assert rest["items"][0]["id"] != page["items"][0]["id"]


def test_bad_input(app: FastAPI, client: TestClient) -> None:
    root = make_user(app, superuser=True)
    headers = bearer(login(client, root.email))
    for body in (
        {"email": "not-an-email", "password": "long enough pw"},
        {"email": "a@b.c", "password": "short"},
        {"email": "a@b.c", "password": "long enough pw", "role": "god"},
        {"email": 5, "password": "long enough pw"},
    ):
        assert client.post("/api/v1/users", json=body, headers=headers).status_code == 422
    assert client.get("/api/v1/users/not-a-uuid", headers=headers).status_code == 422
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/v1/users/{missing}", headers=headers).status_code == 404
    assert client.get("/api/v1/users", params={"limit": 1001}, headers=headers).status_code == 422
    assert client.get("/api/v1/users", params={"limit": 0}, headers=headers).status_code == 422
    bad_cursor = client.get("/api/v1/users", params={"cursor": "garbage"}, headers=headers)
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["detail"]


def test_the_last_superuser_stays(app: FastAPI, client: TestClient) -> None:
    root = make_user(app, "root@example.com", superuser=True)
    headers = bearer(login(client, root.email))
    users = client.get("/api/v1/users", headers=headers).json()["items"]
    bootstrap = next(u for u in users if u["email"] == "admin@localhost")
    retired = client.patch(
        f"/api/v1/users/{bootstrap['id']}", json={"is_active": False}, headers=headers
    )
    assert retired.status_code == 200  # fine: root is still an active superuser
    for change in ({"is_active": False}, {"is_superuser": False}):
        response = client.patch(f"/api/v1/users/{root.id}", json=change, headers=headers)
        assert response.status_code == 409
    second = make_user(app, superuser=True)
    response = client.patch(
        f"/api/v1/users/{second.id}", json={"is_active": False}, headers=headers
    )
    assert response.status_code == 200


def test_plain_users_may_not_manage_users(app: FastAPI, client: TestClient) -> None:
    user = make_user(app)
    headers = bearer(login(client, user.email))
    assert client.get("/api/v1/users", headers=headers).status_code == 403
    body = {"email": "x@example.com", "password": "long enough pw"}
    assert client.post("/api/v1/users", json=body, headers=headers).status_code == 403
