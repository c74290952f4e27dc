"""Login, tokens and /auth/me (SPEC section 3)."""

from __future__ import annotations

from datetime import timedelta

import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.services.auth import ALGORITHM
from taskledger.store.types import utcnow
from tests.helpers import PASSWORD, bearer, login, make_user, state_of


def test_login_and_me(app: FastAPI, client: TestClient) -> None:
    user = make_user(app, "Ada@Example.com")
    response = client.post(
        "/api/v1/auth/token", data={"username": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["kind"] == "user"
    assert me.json()["user"]["id"] == str(user.id)
    assert me.json()["user"]["email"] == "ada@example.com"
    assert "password" not in me.text


def test_failures_all_look_the_same(app: FastAPI, client: TestClient) -> None:
    make_user(app, "ada@example.com")
    inactive = make_user(app, "gone@example.com")
    superuser = make_user(app, "root@example.com", superuser=True)
    token = login(client, superuser.email)
    assert (
        client.patch(
            f"/api/v1/users/{inactive.id}", json={"is_active": False}, headers=bearer(token)
        ).status_code
        == 200
    )
    attempts = [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
        ("gone@example.com", PASSWORD),
    ]
    details = set()
    for email, password in attempts:
        response = client.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert response.status_code == 401
        details.add(response.json()["detail"])
    assert len(details) == 1


def test_login_needs_the_form(client: TestClient) -> None:
    assert client.post("/api/v1/auth/token", json={"username": "a"}).status_code == 422


def _token(app: FastAPI, user_id: str, *, secret: str | None = None, **changes: object) -> str:
    state = state_of(app)
    now = utcnow()
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "typ": "access",
    }
    claims.update(changes)
    return jwt.encode(claims, secret or state.secret_key, algorithm=ALGORITHM)


def test_expired_forged_and_malformed_tokens(app: FastAPI, client: TestClient) -> None:
    user = make_user(app)
    good = login(client, user.email)
    assert client.get("/api/v1/auth/me", headers=bearer(good)).status_code == 200
    pwd = jwt.decode(good, options={"verify_signature": False})["pwd"]
    expired = _token(app, str(user.id), exp=utcnow() - timedelta(seconds=1), pwd=pwd)
    forged = _token(app, str(user.id), secret="not-the-server-secret-0123456789abcdef", pwd=pwd)
    unsigned = jwt.encode({"sub": str(user.id)}, key="", algorithm="none")
    for token in (expired, forged, unsigned, "garbage", "a.b.c"):
        response = client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"


def test_password_reset_and_deactivation_end_old_tokens(app: FastAPI, client: TestClient) -> None:
    root = make_user(app, "root@example.com", superuser=True)
    user = make_user(app)
    admin = bearer(login(client, root.email))
    token = login(client, user.email)
    reset = client.patch(
        f"/api/v1/users/{user.id}", json={"password": "a brand new password"}, headers=admin
    )
    assert reset.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    token = login(client, user.email, "a brand new password")
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401


def test_anonymous_is_401(client: TestClient) -> None:
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated."}
