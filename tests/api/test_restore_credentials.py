"""A restore never brings a credential back to life: an agent deleted through the API comes back
with its API keys revoked, and the report, the summary line and the audit row say which."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.cli import cli
from taskledger.retention.restore.judge import CREDENTIALS, RESTORABLE
from taskledger.settings import Settings
from taskledger.store.models import Base
from taskledger.store.types import utcnow
from tests.api.test_restore_report import ADMIN, last_audit
from tests.helpers import key_headers


def _cli(settings: Settings, *args: str) -> str:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _agent_key(
    client: TestClient, headers: dict[str, str], project_id: uuid.UUID, agent_id: str, name: str
) -> Any:
    response = client.post(
        f"/api/v1/projects/{project_id}/api-keys",
        json={"name": name, "scopes": ["write"], "agent_id": agent_id},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _keys(client: TestClient, headers: dict[str, str], project_id: uuid.UUID) -> dict[str, Any]:
    page = client.get(f"/api/v1/projects/{project_id}/api-keys", headers=headers)
    assert page.status_code == 200, page.text
    return {key["id"]: key for key in page.json()["items"]}


@pytest.mark.parametrize("path", ["api", "cli"])
def test_a_restored_agent_key_comes_back_revoked(
    app: FastAPI, client: TestClient, settings: Settings, path: str
) -> None:
    project, headers = key_headers(app, "write", "admin")
    agent = client.post("/api/v1/agents", json={"name": "worker"}, headers=headers)
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    live = _agent_key(client, headers, project.id, agent_id, "live")
    revoked = _agent_key(client, headers, project.id, agent_id, "revoked-before")
    gone = client.delete(f"/api/v1/projects/{project.id}/api-keys/{revoked['id']}", headers=headers)
    assert gone.status_code == 204
    agent_headers = {"X-API-Key": live["key"]}
    assert client.get("/api/v1/runs", headers=agent_headers).status_code == 200
    before = _keys(client, headers, project.id)

    deleted = client.delete(f"/api/v1/agents/{agent_id}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    assert client.get("/api/v1/runs", headers=agent_headers).status_code == 401
    uri = last_audit(client, mode="execute")["archive_uri"]
    assert uri

    started = utcnow()
    if path == "api":
        response = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
        assert response.status_code == 200, response.text
        report = response.json()
    else:
        dry = _cli(settings, "restore", uri, "--dry-run")
        assert f"1 API key would come back revoked: {live['id']}; " in dry
        report = json.loads(_cli(settings, "restore", uri, "--json"))

    # The agent is back; its live key came back revoked, and the report says which.
    assert client.get(f"/api/v1/agents/{agent_id}", headers=headers).status_code == 200
    refused = client.get("/api/v1/runs", headers=agent_headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    keys = report["tables"]["api_keys"]
    assert (keys["inserted"], keys["revoked"], keys["revoked_keys"]) == (2, 1, [live["id"]])
    assert report["revoked"] == 1
    assert f"1 API key came back revoked: {live['id']}; " in report["summary"]
    audit = last_audit(client, mode="restore")
    assert audit["id"] == report["retention_run_id"]
    assert audit["counts"]["tables"]["api_keys"]["revoked_keys"] == [live["id"]]
    assert audit["counts"]["revoked"] == 1

    after = _keys(client, headers, project.id)
    assert after.keys() == before.keys()
    back = after[live["id"]]
    assert started <= datetime.fromisoformat(back["revoked_at"]) <= utcnow()
    assert {**back, "revoked_at": None} == before[live["id"]]
    # A key revoked before the delete keeps the time it was revoked at.
    assert after[revoked["id"]] == before[revoked["id"]]
    # The project's own key was never touched.
    assert client.get("/api/v1/runs", headers=headers).status_code == 200

    # Again: nothing to insert, nothing revoked, no conflict (a revoked key is no change).
    if path == "api":
        again = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN).json()
    else:
        line = _cli(settings, "restore", uri).splitlines()[-1]
        assert "revoked" not in line and "conflict" not in line
        again = last_audit(client, mode="restore")["counts"]
    assert (again["inserted"], again["revoked"], again["conflicts"]) == (0, 0, 0)
    assert client.get("/api/v1/runs", headers=agent_headers).status_code == 401


def test_no_table_restore_writes_holds_a_live_credential() -> None:
    """Every restorable table with a secret (a hash, a token, a password) is a credential table,
    which restore inserts revoked; users, who log in with a password, are never restorable."""
    secretive = ("hash", "token", "secret", "password")
    for name in RESTORABLE:
        columns = Base.metadata.tables[name].columns
        if any(word in column.name for column in columns for word in secretive):
            assert name in CREDENTIALS, name
    assert "users" not in RESTORABLE and "projects" not in RESTORABLE
    for table, column in CREDENTIALS.items():
        assert Base.metadata.tables[table].columns[column].nullable
