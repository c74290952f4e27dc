"""Restore says plainly what it left alone: each conflict named with its key and why, in the JSON
of the API and the CLI, in the CLI's summary line and in the audit row; and a deleted run comes
back under its own id even after newer runs were recorded (integer keys are never reused)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from taskledger.cli import cli
from taskledger.settings import Settings
from taskledger.store.models import RetentionRun, Run
from tests.conftest import ADMIN_KEY
from tests.helpers import key_headers, transaction

ADMIN = {"X-Admin-Key": ADMIN_KEY}
DIFFERENT = "a different row holds this key"


def record(client: TestClient, headers: dict[str, str], name: str, **extra: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/runs",
        json={"task": name, "run_id": name, "status": "completed", "inputs": {"z": 1, "a": 2}},
        headers=headers | extra,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def delete_run(client: TestClient, headers: dict[str, str], run_id: int) -> str:
    """Delete a run through the API; the URI of the archive that delete wrote."""
    response = client.delete(f"/api/v1/runs/{run_id}", headers=headers)
    assert response.status_code == 204, response.text
    assert client.get(f"/api/v1/runs/{run_id}", headers=headers).status_code == 404
    return last_audit(client, mode="execute")["archive_uri"]


def last_audit(client: TestClient, *, mode: str) -> dict[str, Any]:
    page = client.get(f"/api/v1/admin/retention/runs?mode={mode}", headers=ADMIN)
    assert page.status_code == 200, page.text
    newest: dict[str, Any] = max(page.json()["items"], key=lambda item: item["id"])
    return newest


def restore_api(client: TestClient, uri: str) -> dict[str, Any]:
    response = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_cli(settings: Settings, *args: str) -> str:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_key_another_row_holds_is_a_conflict_named_everywhere(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    _, headers = key_headers(app)
    runs = [record(client, headers, f"r{n}") for n in range(3)]
    victim = runs[1]["id"]
    uri = delete_run(client, headers, victim)
    # A different row takes the deleted run's key (normal inserts never reuse it: an explicit id).
    with transaction(app) as session:
        project_id = session.scalar(select(Run.project_id).where(Run.id == runs[0]["id"]))
        session.add(
            Run(id=victim, project_id=project_id, task="other", run_id="x", status="queued")
        )

    body = restore_api(client, uri)
    runs_counts = body["tables"]["runs"]
    assert (body["inserted"], body["conflicts"], body["skipped"]) == (0, 1, 1)
    assert runs_counts["conflicts"] == 1
    [conflict] = runs_counts["conflicted"]
    assert conflict["key"] == {"id": victim} and conflict["reason"] == DIFFERENT
    assert {"task", "run_id", "status"} <= set(conflict["columns"])
    assert f"1 conflict: runs {victim} ({DIFFERENT})" in body["summary"]
    # The audit row carries the same report.
    audit = last_audit(client, mode="restore")
    assert audit["id"] == body["retention_run_id"]
    assert audit["counts"]["tables"]["runs"]["conflicted"] == [conflict]
    assert audit["counts"]["summary"] == body["summary"]
    with transaction(app) as session:
        assert session.get(Run, victim).task == "other"  # type: ignore[union-attr]

    # The CLI says the same, in its summary line and in JSON.
    out = run_cli(settings, "restore", uri)
    [line] = [line for line in out.splitlines() if line.startswith("inserted")]
    assert f"inserted 0, restored 0, skipped 1, orphaned 0; 1 conflict: runs {victim} " in line
    assert f"({DIFFERENT}); outcome ok; audit row " in line
    report = json.loads(run_cli(settings, "restore", uri, "--json"))
    assert report["tables"]["runs"]["conflicted"] == [conflict]
    assert report["summary"].startswith("inserted 0, restored 0, skipped 1, orphaned 0; 1 conf")


def test_a_unique_value_another_row_holds_is_a_conflict_naming_the_columns(
    app: FastAPI, client: TestClient
) -> None:
    _, headers = key_headers(app)
    first = record(client, headers, "once", **{"Idempotency-Key": "same-key"})
    uri = delete_run(client, headers, first["id"])
    again = record(client, headers, "twice", **{"Idempotency-Key": "same-key"})
    assert again["id"] != first["id"]

    body = restore_api(client, uri)
    reason = "another row holds its unique value (project_id, idempotency_key)"
    assert body["tables"]["runs"]["conflicted"] == [
        {"key": {"id": first["id"]}, "reason": reason, "columns": ["project_id", "idempotency_key"]}
    ]
    assert f"1 conflict: runs {first['id']} ({reason})" in body["summary"]
    assert client.get(f"/api/v1/runs/{first['id']}", headers=headers).status_code == 404


def test_the_newest_run_deleted_comes_back_under_its_own_id(
    app: FastAPI, client: TestClient
) -> None:
    """On SQLite a deleted newest id used to go to the next run recorded, so the deleted run
    could never come back: keys are never reused now, on either backend."""
    _, headers = key_headers(app)
    runs = [record(client, headers, f"r{n}") for n in range(3)]
    newest = runs[-1]
    uri = delete_run(client, headers, newest["id"])
    later = record(client, headers, "later")
    assert later["id"] > newest["id"]

    body = restore_api(client, uri)
    assert (body["inserted"], body["conflicts"]) == (1, 0)
    assert "conflict" not in body["summary"] and body["tables"]["runs"]["conflicted"] == []
    back = client.get(f"/api/v1/runs/{newest['id']}", headers=headers)
    assert back.status_code == 200 and back.json() == newest
    assert client.get(f"/api/v1/runs/{later['id']}", headers=headers).json() == later
    with transaction(app) as session:
        audits = session.scalars(select(RetentionRun).where(RetentionRun.mode == "restore")).all()
    assert [a.counts["conflicts"] for a in audits if a.counts] == [0]
