"""Text that is not valid Unicode (a lone UTF-16 surrogate, legal in JSON escapes) is a 422."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import make_key, make_project, make_user

BODIES = [
    ("/api/v1/agents", '{"name": "bad \\ud800 name"}'),
    ("/api/v1/agents", '{"name": "ok", "metadata": {"k\\udfff": 1}}'),
    ("/api/v1/tasks", '{"title": "\\udc00"}'),
    ("/api/v1/runs", '{"task": "t", "status": "running", "inputs": {"x": "\\ud83d"}}'),
    ("/api/v1/agents", '{"name": 5, "bad": "\\ud800"}'),  # also inside a validation error
]


@pytest.mark.parametrize(("path", "body"), BODIES)
def test_a_lone_surrogate_is_refused_with_422(
    app: FastAPI, client: TestClient, path: str, body: str
) -> None:
    project = make_project(app, make_user(app))
    key = make_key(app, project, "read", "write")
    response = client.post(
        path,
        content=body.encode(),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "not valid Unicode" in response.json()["detail"]
    listed = client.get(path, headers={"X-API-Key": key})
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_a_valid_astral_character_is_kept(app: FastAPI, client: TestClient) -> None:
    project = make_project(app, make_user(app))
    key = make_key(app, project, "read", "write")
    response = client.post(
        "/api/v1/agents",
        content=b'{"name": "rocket \\ud83d\\ude80"}',
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "rocket \U0001f680"


@pytest.mark.parametrize(
    "raw", [b"username=%ED%A0%80&password=x", b"username=\xed\xa0\x80&password=x"]
)
def test_a_login_form_with_invalid_utf8_is_refused(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/api/v1/auth/token",
        content=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 401, 422), response.text
