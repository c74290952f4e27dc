"""The seed-compatible ``/agents/tasks`` endpoints: exact paths, field names and shapes."""

from __future__ import annotations

import csv
import io

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import key_headers

SEED_FIELDS = {
    "id",
    "task",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "inputs",
    "outputs_uri",
    "log_excerpt",
    "approval_state",
    "approver",
    "webhook_notified_at",
}


def test_seed_endpoints(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    created = client.post(
        "/agents/tasks/",
        json={
            "task": "seo.tune",
            "run_id": "nightly-1",
            "status": "awaiting_approval",
            "started_at": "2025-10-01T03:15:00Z",
            "inputs": {"pages": 3},
            "approval_state": "pending",
        },
        headers=headers,
    )
    assert created.status_code == 201
    run = created.json()
    assert set(run) == SEED_FIELDS
    patched = client.patch(
        f"/agents/tasks/{run['id']}",
        json={
            "status": "completed",
            "approval_state": "approved",
            "approver": "ops@example.com",
            "webhook_notified_at": "2025-10-01T04:00:00Z",
        },
        headers=headers,
    )
    assert patched.status_code == 200
    assert patched.json()["approver"] == "ops@example.com"
    assert patched.json()["duration_ms"] is not None
    for i in range(4):
        client.post(
            "/agents/tasks/",
            json={"task": f"t{i}", "run_id": f"r{i}", "status": "failed" if i % 2 else "running"},
            headers=headers,
        )

    listed = client.get("/agents/tasks/", headers=headers).json()
    assert isinstance(listed, list) and len(listed) == 5 and set(listed[0]) == SEED_FIELDS

    page = client.get("/agents/tasks/paged", params={"limit": 2}, headers=headers).json()
    assert set(page) == {"items", "next_cursor"} and len(page["items"]) == 2
    rest = client.get(
        "/agents/tasks/paged", params={"limit": 10, "cursor": page["next_cursor"]}, headers=headers
    ).json()
    assert len(rest["items"]) == 3 and rest["next_cursor"] is None

    filtered = client.get(
        "/agents/tasks/paged",
        params=[
            ("status", "failed"),
            ("status", "completed"),
            ("task", "t1"),
            ("task", "t3"),
            ("task", "seo.tune"),
        ],
        headers=headers,
    ).json()
    assert {i["task"] for i in filtered["items"]} == {"t1", "t3", "seo.tune"}

    exported = client.get("/agents/tasks/paged.csv", params={"status": "failed"}, headers=headers)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["task"] for r in rows} == {"t1", "t3"}
    since = client.get(
        "/agents/tasks/paged", params={"since": "2030-01-01T00:00:00Z"}, headers=headers
    ).json()
    assert since["items"] == []


def test_seed_endpoints_need_a_key(client: TestClient) -> None:
    assert client.get("/agents/tasks/paged").status_code == 401
    assert client.post("/agents/tasks/", json={"task": "t"}).status_code == 401


def test_a_seed_client_without_a_key_is_told_what_to_send(client: TestClient) -> None:
    """The original endpoints took no credentials: their 401 says which header to send, how to
    make a key, and where the migration is documented, in the body every 401 has."""
    calls = [
        ("GET", "/agents/tasks/", {}),
        ("GET", "/agents/tasks/paged", {}),
        ("GET", "/agents/tasks/paged.csv", {}),
        ("POST", "/agents/tasks/", {"X-API-Key": "tl_notakey_0123456789"}),
        ("PATCH", "/agents/tasks/1", {"Authorization": "Bearer tl_notakey_0123456789"}),
        ("GET", "/agents/tasks/paged", {"Authorization": "Bearer not.a.jwt"}),
    ]
    for method, path, headers in calls:
        response = client.request(method, path, headers=headers, json={"task": "t"})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert list(body) == ["detail"] and isinstance(body["detail"], str)
        for hint in ("X-API-Key", "taskledger keys create", "docs/migrating.md"):
            assert hint in body["detail"], (method, path, body)
    # The reason comes first, as on the other routes.
    unknown = client.get("/agents/tasks/paged", headers={"X-API-Key": "tl_notakey_0123456789"})
    assert unknown.json()["detail"].startswith("Invalid API key.")
    assert client.get("/agents/tasks/").json()["detail"].startswith("Not authenticated.")


def test_other_routes_keep_their_plain_401(client: TestClient) -> None:
    detail = client.get("/api/v1/runs").json()["detail"]
    assert detail == "Not authenticated."
