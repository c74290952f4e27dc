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
