"""``POST /api/v1/runs:batch``: all or nothing, per-item errors, idempotent items."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from taskledger.services import run_batch
from taskledger.store.models import Run
from tests.helpers import key_headers, transaction


def _count(app: FastAPI) -> int:
    with transaction(app) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def test_a_full_batch(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    runs = [
        {"task": f"t{i % 7}", "status": "completed", "idempotency_key": f"k{i}"}
        for i in range(1000)
    ]
    response = client.post("/api/v1/runs:batch", json={"runs": runs}, headers=headers)
    assert response.status_code == 201, response.text[:300]
    body = response.json()
    assert body["created"] == 1000 and body["existing"] == 0
    assert [item["index"] for item in body["items"]] == list(range(1000))
    assert len({item["id"] for item in body["items"]}) == 1000
    again = client.post(
        "/api/v1/runs:batch", json={"runs": [*runs[:10], {"task": "new"}]}, headers=headers
    ).json()
    assert again["created"] == 1 and again["existing"] == 10
    assert [i["id"] for i in again["items"][:10]] == [i["id"] for i in body["items"][:10]]
    assert _count(app) == 1001


def test_one_bad_item_writes_nothing(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    runs = [{"task": "ok"}] * 5 + [
        {"task": "bad", "status": "nope"},
        {"task": "x" * 99},
        {"task": "ok"},
    ]
    response = client.post("/api/v1/runs:batch", json={"runs": runs}, headers=headers)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [entry["loc"] for entry in detail] == [
        ["body", "runs", 5, "status"],
        ["body", "runs", 6, "task"],
    ]
    assert all(entry["msg"] and entry["type"] for entry in detail)
    assert _count(app) == 0


def test_limits_and_duplicates_within_a_batch(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    too_many = client.post(
        "/api/v1/runs:batch", json={"runs": [{"task": "t"}] * 1001}, headers=headers
    )
    assert too_many.status_code == 422
    assert (
        client.post("/api/v1/runs:batch", json={"runs": "nope"}, headers=headers).status_code == 422
    )
    assert (
        client.post("/api/v1/runs:batch", json=[{"task": "t"}], headers=headers).status_code == 422
    )
    twice = client.post(
        "/api/v1/runs:batch",
        json={
            "runs": [
                {"task": "t", "idempotency_key": "same"},
                {"task": "t", "idempotency_key": "same"},
            ]
        },
        headers=headers,
    ).json()
    assert twice["created"] == 1 and twice["existing"] == 1
    assert twice["items"][0]["id"] == twice["items"][1]["id"]
    empty = client.post("/api/v1/runs:batch", json={"runs": []}, headers=headers)
    assert empty.status_code == 201 and empty.json()["created"] == 0


def test_read_keys_cannot_ingest(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app, "read")
    response = client.post("/api/v1/runs:batch", json={"runs": [{"task": "t"}]}, headers=headers)
    assert response.status_code == 403


def test_a_key_recorded_meanwhile_is_found_on_the_second_look(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer records a key between the lookup and the insert: the insert fails on the
    unique constraint, and the batch is tried again with the key now known."""
    _, headers = key_headers(app)
    recorded = {"runs": [{"task": "a", "idempotency_key": "k1"}]}
    first = client.post("/api/v1/runs:batch", json=recorded, headers=headers).json()
    lookups: list[set[str]] = []
    real = run_batch._known_keys

    def blind_once(*, session: Any, project_id: Any, keys: set[str]) -> Any:
        lookups.append(keys)
        return {} if len(lookups) == 1 else real(session=session, project_id=project_id, keys=keys)

    monkeypatch.setattr(run_batch, "_known_keys", blind_once)
    response = client.post(
        "/api/v1/runs:batch",
        json={"runs": [{"task": "b", "idempotency_key": "k1"}, {"task": "c"}]},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(lookups) == 2
    assert body["created"] == 1 and body["existing"] == 1
    assert body["items"][0]["id"] == first["items"][0]["id"]
    assert body["items"][0]["created"] is False and body["items"][1]["created"] is True
    assert _count(app) == 2


def _post(client: TestClient, headers: dict[str, str], runs: list[Any], **body: Any) -> Any:
    response = client.post("/api/v1/runs:batch", json={"runs": runs, **body}, headers=headers)
    assert response.status_code == 201, response.text[:300]
    return response.json()


def _run(client: TestClient, headers: dict[str, str], run_pk: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_pk}", headers=headers)
    assert response.status_code == 200
    return dict(response.json())


def test_advance_moves_a_run_forward_and_never_back(client: TestClient, app: FastAPI) -> None:
    _, headers = key_headers(app)
    start = "2026-01-01T10:00:00+00:00"
    queued = {"task": "t", "idempotency_key": "a", "started_at": start, "inputs": {"x": 1}}
    first = _post(client, headers, [queued], on_existing="advance")
    run_pk = first["items"][0]["id"]
    assert first["items"][0]["status"] == "queued" and first["created"] == 1

    running = {**queued, "status": "running", "inputs": {"x": 2}}
    answer = _post(client, headers, [running], on_existing="advance")
    assert answer["advanced"] == 1 and answer["items"][0] == {
        "index": 0,
        "id": run_pk,
        "run_id": first["items"][0]["run_id"],
        "idempotency_key": "a",
        "created": False,
        "advanced": True,
        "status": "running",
    }
    # A late queued state and a replay change nothing.
    late = _post(client, headers, [queued, running], on_existing="advance")
    assert late["advanced"] == 0 and [i["status"] for i in late["items"]] == ["running"] * 2

    done = {
        "task": "t",
        "idempotency_key": "a",
        "status": "failed",
        # The end is before the stored start (another host's clock): it is dated at the start.
        "finished_at": "2026-01-01T09:59:59+00:00",
        "duration_ms": 750,
        "log_excerpt": "ValueError: boom",
    }
    assert _post(client, headers, [done], on_existing="advance")["advanced"] == 1
    stored = _run(client, headers, run_pk)
    assert stored["status"] == "failed" and stored["duration_ms"] == 750
    assert stored["finished_at"].startswith("2026-01-01T10:00:00")
    assert stored["log_excerpt"] == "ValueError: boom"
    assert stored["inputs"] == {"x": 1}  # what the run was created with is kept

    # A terminal run never changes, whatever comes later.
    other = {**done, "status": "completed", "log_excerpt": None}
    again = _post(client, headers, [other], on_existing="advance")
    assert again["advanced"] == 0 and again["items"][0]["status"] == "failed"
    assert _run(client, headers, run_pk)["status"] == "failed"


def test_keep_is_the_default_and_leaves_the_stored_run(client: TestClient, app: FastAPI) -> None:
    _, headers = key_headers(app)
    first = _post(client, headers, [{"task": "t", "idempotency_key": "k"}])
    run_pk = first["items"][0]["id"]
    later = _post(client, headers, [{"task": "t", "idempotency_key": "k", "status": "completed"}])
    assert later["advanced"] == 0 and later["items"][0]["advanced"] is False
    assert later["items"][0]["status"] == "queued"
    assert _run(client, headers, run_pk)["status"] == "queued"
    response = client.post(
        "/api/v1/runs:batch",
        json={"runs": [{"task": "t"}], "on_existing": "overwrite"},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "on_existing"]


def test_advance_within_one_batch(client: TestClient, app: FastAPI) -> None:
    """A run created and moved on by later items of the same batch ends at the furthest."""
    _, headers = key_headers(app)
    states = [
        {"task": "t", "idempotency_key": "b", "status": "queued"},
        {"task": "t", "idempotency_key": "b", "status": "running", "log_excerpt": "going"},
        {"task": "t", "idempotency_key": "b", "status": "queued"},
        {"task": "t", "idempotency_key": "b", "status": "completed", "duration_ms": 5},
    ]
    answer = _post(client, headers, states, on_existing="advance")
    assert answer["created"] == 1 and answer["advanced"] == 2
    assert [i["status"] for i in answer["items"]] == ["queued", "running", "running", "completed"]
    stored = _run(client, headers, answer["items"][0]["id"])
    assert stored["status"] == "completed" and stored["duration_ms"] == 5
    assert stored["log_excerpt"] == "going" and stored["finished_at"] is not None
    assert _count(app) == 1
