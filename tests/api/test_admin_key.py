"""The admin key: header only, constant-time, fail closed when unset."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from taskledger.api import create_app
from taskledger.settings import Settings
from tests.conftest import ADMIN_KEY


def test_admin_key_in_header(client: TestClient) -> None:
    me = client.get("/api/v1/auth/me", headers={"X-Admin-Key": ADMIN_KEY})
    assert me.status_code == 200
    assert me.json()["kind"] == "admin_key"
    assert client.get("/api/v1/auth/me", headers={"X-Admin-Key": "wrong"}).status_code == 403
    # An empty header is no credential at all.
    assert client.get("/api/v1/auth/me", headers={"X-Admin-Key": ""}).status_code == 401


def test_admin_key_in_query_string_is_ignored(client: TestClient) -> None:
    for name in ("X-Admin-Key", "admin_key", "x_admin_key", "api_key"):
        response = client.get("/api/v1/auth/me", params={name: ADMIN_KEY})
        assert response.status_code == 401


def test_admin_key_is_not_a_project_credential(client: TestClient) -> None:
    projects = client.get("/api/v1/projects", headers={"X-Admin-Key": ADMIN_KEY})
    assert projects.status_code == 200 and projects.json()["items"] == []
    created = client.post(
        "/api/v1/projects", json={"name": "x"}, headers={"X-Admin-Key": ADMIN_KEY}
    )
    assert created.status_code == 403


def test_unset_admin_key_refuses_everything(tmp_path: Path, engine: Engine) -> None:
    settings = Settings(data_dir=tmp_path / "d", _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings, engine=engine)) as client:
        for value in ("anything", ADMIN_KEY):
            response = client.get("/api/v1/auth/me", headers={"X-Admin-Key": value})
            assert response.status_code == 403
