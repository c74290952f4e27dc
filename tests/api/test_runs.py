"""The runs API: recording, status rules, idempotency, filters and keyset paging (SPEC 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from taskledger.services.generate import generate
from tests.helpers import key_headers, state_of, transaction


def test_record_and_finish_a_run(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    started = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    created = client.post(
        "/api/v1/runs",
        json={
            "task": "ingest",
            "run_id": "r-1",
            "status": "running",
            "started_at": started.isoformat(),
            "inputs": {"n": 1},
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["finished_at"] is None and run["duration_ms"] is None
    assert run["started_at"] == "2025-05-01T12:00:00Z"

    done = client.patch(
        f"/api/v1/runs/{run['id']}",
        json={"status": "completed", "outputs_uri": "s3://b/o.json"},
        headers=headers,
    )
    assert done.status_code == 200
    body = done.json()
    finished = datetime.fromisoformat(body["finished_at"])
    assert finished.tzinfo is not None
    assert body["duration_ms"] == int((finished - started).total_seconds() * 1000)
    assert body["outputs_uri"] == "s3://b/o.json"

    leave = client.patch(f"/api/v1/runs/{run['id']}", json={"status": "running"}, headers=headers)
    assert leave.status_code == 409
    reopened = client.patch(
        f"/api/v1/runs/{run['id']}", json={"status": "running", "reopen": True}, headers=headers
    )
    assert reopened.status_code == 200
    assert reopened.json()["finished_at"] is None and reopened.json()["duration_ms"] is None
    assert client.get(f"/api/v1/runs/{run['id']}", headers=headers).json()["status"] == "running"


def test_terminal_on_create_gets_finish_time(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    started = datetime.now(UTC) - timedelta(seconds=5)
    run = client.post(
        "/api/v1/runs",
        json={"task": "t", "status": "failed", "started_at": started.isoformat()},
        headers=headers,
    ).json()
    assert run["finished_at"] is not None
    assert 4000 <= run["duration_ms"] <= 60_000
    assert len(run["run_id"]) == 32  # generated


@pytest.mark.parametrize(
    "body",
    [
        {"task": "t", "status": "exploded"},
        {"task": ""},
        {"task": "x" * 65},
        {"task": "t", "started_at": "2025-01-01T00:00:00"},  # no offset
        {"task": "t", "duration_ms": -1},
        {"task": "t", "colour": "red"},
        {"task": "t", "agent_id": "not-a-uuid"},
        {"task": 5},
    ],
)
def test_bad_runs_are_422(app: FastAPI, client: TestClient, body: dict[str, object]) -> None:
    _, headers = key_headers(app)
    assert client.post("/api/v1/runs", json=body, headers=headers).status_code == 422
    assert (
        client.post(
            "/api/v1/runs",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        ).status_code
        == 422
    )


def test_references_must_be_in_the_project(app: FastAPI, client: TestClient) -> None:
    from taskledger.store.models import Agent

    _project, headers = key_headers(app)
    other, _ = key_headers(app)
    with transaction(app) as session:
        foreign = Agent(project_id=other.id, name="a")
        session.add(foreign)
    response = client.post(
        "/api/v1/runs", json={"task": "t", "agent_id": str(foreign.id)}, headers=headers
    )
    assert response.status_code == 404
    assert "agent_id" in response.text


def test_idempotency_key_header_and_field(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    first = client.post(
        "/api/v1/runs", json={"task": "t"}, headers={**headers, "Idempotency-Key": "abc"}
    )
    again = client.post(
        "/api/v1/runs", json={"task": "t"}, headers={**headers, "Idempotency-Key": "abc"}
    )
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    field = client.post(
        "/api/v1/runs", json={"task": "t", "idempotency_key": "abc"}, headers=headers
    )
    assert field.status_code == 200 and field.json()["id"] == first.json()["id"]
    clash = client.post(
        "/api/v1/runs",
        json={"task": "t", "idempotency_key": "x"},
        headers={**headers, "Idempotency-Key": "y"},
    )
    assert clash.status_code == 422
    # The same key in another project is another run.
    _, other = key_headers(app)
    elsewhere = client.post(
        "/api/v1/runs", json={"task": "t"}, headers={**other, "Idempotency-Key": "abc"}
    )
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first.json()["id"]


def _page_all(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:  # type: ignore[type-arg]
    items: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        query = {**params, "limit": params.get("limit", 97)}
        if cursor:
            query["cursor"] = cursor
        response = client.get("/api/v1/runs", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_filters_match_independent_sql(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app, "read")
    state = state_of(app)
    generate(state.engine, project.id, runs=1500, days=30, agents=3, seed=7)
    since = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)
    with transaction(app) as session:
        agent_name = session.execute(
            text("SELECT name FROM agents ORDER BY name LIMIT 1")
        ).scalar_one()
    cases = [
        ({}, "1=1"),
        ({"status": ["failed", "cancelled"]}, "status IN ('failed', 'cancelled')"),
        (
            {"task": ["embed", "crawl"], "status": ["completed"]},
            "task IN ('embed', 'crawl') AND status = 'completed'",
        ),
        ({"since": since.isoformat()}, "started_at >= :since"),
        ({"until": since.isoformat(), "task": ["plan"]}, "started_at < :since AND task = 'plan'"),
        ({"q": "timed out"}, "lower(log_excerpt) LIKE '%timed out%'"),
        ({"agent": agent_name}, "agent_id IN (SELECT id FROM agents WHERE name = :agent)"),
        (
            {"status": ["awaiting_approval"], "approval_state": "pending"},
            "status = 'awaiting_approval' AND approval_state = 'pending'",
        ),
    ]
    for params, where in cases:
        with state.engine.connect() as conn:
            expected = conn.execute(
                text(f"SELECT count(*) FROM runs WHERE project_id = :p AND {where}"),
                {
                    "p": project.id.hex if state.engine.dialect.name == "sqlite" else project.id,
                    "since": since.replace(tzinfo=None).isoformat(" ", "microseconds")
                    if state.engine.dialect.name == "sqlite"
                    else since,
                    "agent": agent_name,
                },
            ).scalar_one()
        items = _page_all(client, headers, **params)
        assert len(items) == expected, params
        assert expected > 0 or params.get("q"), params
        keys = [(i["started_at"], i["id"]) for i in items]
        assert keys == sorted(keys, reverse=True), params


def test_paging_survives_inserts_and_ties(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app)
    same = datetime(2025, 1, 1, tzinfo=UTC).isoformat()
    for i in range(40):  # many runs share one start time: the id breaks ties
        client.post(
            "/api/v1/runs",
            json={"task": "t", "run_id": f"tie-{i}", "started_at": same},
            headers=headers,
        )
    generate(state_of(app).engine, project.id, runs=300, days=5, agents=1, seed=3)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 23}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/v1/runs", params=params, headers=headers).json()
        seen.extend(item["id"] for item in body["items"])
        # New runs arrive while the client pages; they start now, before its position.
        client.post("/api/v1/runs", json={"task": "late"}, headers=headers)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 340


def test_cursor_misuse_is_400(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    for i in range(3):
        client.post("/api/v1/runs", json={"task": f"t{i}", "status": "failed"}, headers=headers)
    cursor = client.get(
        "/api/v1/runs", params={"limit": 1, "status": "failed"}, headers=headers
    ).json()["next_cursor"]
    assert cursor
    other = client.get("/api/v1/runs", params={"limit": 1, "cursor": cursor}, headers=headers)
    assert other.status_code == 400
    for bad in ("!!", "eyJ2IjpbXX0", cursor[:-3]):
        response = client.get(
            "/api/v1/runs", params={"cursor": bad, "status": "failed"}, headers=headers
        )
        assert response.status_code == 400
    assert client.get("/api/v1/runs", params={"limit": 5000}, headers=headers).status_code == 422


def test_runs_of_other_projects_are_404(app: FastAPI, client: TestClient) -> None:
    _, mine = key_headers(app)
    _, theirs = key_headers(app)
    run = client.post("/api/v1/runs", json={"task": "t"}, headers=theirs).json()
    assert client.get(f"/api/v1/runs/{run['id']}", headers=mine).status_code == 404
    assert (
        client.patch(f"/api/v1/runs/{run['id']}", json={"approver": "x"}, headers=mine).status_code
        == 404
    )
    assert client.get("/api/v1/runs/999999", headers=mine).status_code == 404
    assert client.get("/api/v1/runs/abc", headers=mine).status_code == 422
