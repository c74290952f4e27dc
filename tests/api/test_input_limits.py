"""The input limits of SPEC section 4, on both backends: each a 422 that names the field and
writes nothing, never a 500, and never a row that later poisons reads of its project."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from taskledger.store.models import Agent, AgentSession, Instruction, Run, Task, User
from tests.helpers import (
    bearer,
    key_headers,
    login,
    make_agent,
    make_user,
    problem,
    transaction,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    """A JSON value ``depth`` levels deep: objects and arrays in turn."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def raw_json(depth: int) -> str:
    """JSON text ``depth`` arrays deep, built as text (too deep for Python to encode)."""
    return "[" * depth + "]" * depth


def count(app: FastAPI, model: Any) -> int:
    with transaction(app) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def loc_of(response: Any) -> list[list[Any]]:
    return [item["loc"] for item in response.json()["detail"]]


class World:
    def __init__(self, app: FastAPI, client: TestClient) -> None:
        self.project, self.headers = key_headers(app, "read", "write")
        self.agent = make_agent(app, self.project)
        self.client = client


@pytest.fixture
def world(app: FastAPI, client: TestClient) -> World:
    return World(app, client)


#: (what, JSON field, model whose table must stay empty, how to post a body holding ``value``)
Poster = Callable[[World, str], Any]


def _runs_batch(w: World, value: str) -> Any:
    body = '{"runs": [{"task": "ok"}, {"task": "t", "inputs": ' + value + "}]}"
    return w.client.post(
        "/api/v1/runs:batch",
        content=body,
        headers={**w.headers, "content-type": "application/json"},
    )


def _post(path: str, prefix: str, field: str) -> Poster:
    def post(w: World, value: str) -> Any:
        body = "{" + prefix.format(agent=w.agent.id) + ", " + json.dumps(field) + ": " + value + "}"
        return w.client.post(
            path, content=body, headers={**w.headers, "content-type": "application/json"}
        )

    return post


JSON_FIELDS: list[tuple[str, str, Any, Poster]] = [
    ("runs:batch inputs", "inputs", Run, _runs_batch),
    ("run inputs", "inputs", Run, _post("/api/v1/runs", '"task": "t"', "inputs")),
    ("agent config", "config", Agent, _post("/api/v1/agents", '"name": "n"', "config")),
    ("task result", "result", Task, _post("/api/v1/tasks", '"title": "t"', "result")),
    (
        "session parameters",
        "experimental_parameters",
        AgentSession,
        _post("/api/v1/sessions", '"agent_id": "{agent}"', "experimental_parameters"),
    ),
    (
        "instruction payload",
        "payload",
        Instruction,
        _post("/api/v1/instructions", '"agent_id": "{agent}"', "payload"),
    ),
    (
        "instruction metadata",
        "metadata",
        Instruction,
        _post("/api/v1/instructions", '"agent_id": "{agent}", "payload": 1', "metadata"),
    ),
]


def _wrap(field: str, value: str) -> str:
    # Fields that take an object get one around the hostile value.
    return value if field in ("inputs", "result", "payload") else '{"k": ' + value + "}"


@pytest.mark.parametrize(("what", "field", "model", "post"), JSON_FIELDS, ids=lambda v: str(v))
@pytest.mark.parametrize("depth", [33, 900, 50_000])
def test_json_nested_too_deep_is_422_naming_the_field(
    app: FastAPI, world: World, what: str, field: str, model: Any, post: Poster, depth: int
) -> None:
    before = count(app, model)
    response = post(world, _wrap(field, raw_json(depth)))
    assert response.status_code == 422, (what, response.status_code, response.text[:300])
    assert any(field in item for item in loc_of(response)), loc_of(response)
    assert "deeper than 32" in problem(response)
    assert count(app, model) == before
    # Reads of the project still work (nothing poisoned them).
    assert world.client.get("/api/v1/runs", headers=world.headers).status_code == 200
    assert world.client.get("/agents/tasks/paged", headers=world.headers).status_code == 200


@pytest.mark.parametrize(("what", "field", "model", "post"), JSON_FIELDS, ids=lambda v: str(v))
def test_json_at_the_limit_is_stored_and_read_back(
    app: FastAPI, world: World, what: str, field: str, model: Any, post: Poster
) -> None:
    depth = 32 if field in ("inputs", "result", "payload") else 31  # _wrap adds a level
    value = nested(depth)
    response = post(world, _wrap(field, json.dumps(value)))
    assert response.status_code in (200, 201), (what, response.text[:300])
    listed = world.client.get("/api/v1/runs", headers=world.headers)
    assert listed.status_code == 200


@pytest.mark.parametrize(("what", "field", "model", "post"), JSON_FIELDS, ids=lambda v: str(v))
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "9223372036854775808"])
def test_json_numbers_no_backend_can_hold_alike_are_422(
    app: FastAPI, world: World, what: str, field: str, model: Any, post: Poster, value: str
) -> None:
    before = count(app, model)
    response = post(world, _wrap(field, '{"x": [1, ' + value + "]}"))
    assert response.status_code == 422, (what, value, response.text[:300])
    assert any(field in item for item in loc_of(response))
    assert count(app, model) == before


def test_a_policy_nested_too_deeply_is_422(app: FastAPI, client: TestClient) -> None:
    superuser = make_user(app, superuser=True)
    headers = bearer(login(client, superuser.email))
    for depth in (40, 5000):
        policy = 'name = "deep"\nx = ' + "[" * depth + "]" * depth + "\n"
        response = client.post(
            "/api/v1/admin/retention/preview", json={"policy": policy}, headers=headers
        )
        assert response.status_code == 422, (depth, response.text[:300])


TOO_BIG = str(2**63)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/runs/{TOO_BIG}"),
        ("PATCH", f"/api/v1/runs/{TOO_BIG}"),
        ("DELETE", f"/api/v1/runs/{TOO_BIG}"),
        ("PATCH", f"/agents/tasks/{TOO_BIG}"),
        ("GET", f"/api/v1/connections/{TOO_BIG}"),
        ("POST", f"/api/v1/connections/{TOO_BIG}/heartbeat"),
        ("POST", f"/api/v1/admin/holds/{TOO_BIG}/release"),
        ("GET", f"/api/v1/runs.csv?limit={TOO_BIG}"),
        ("GET", f"/agents/tasks/paged.csv?limit={TOO_BIG}"),
    ],
)
def test_integers_outside_64_bits_are_422(
    app: FastAPI, world: World, method: str, path: str
) -> None:
    superuser = make_user(app, superuser=True)
    headers = world.headers if "admin" not in path else bearer(login(world.client, superuser.email))
    body = {"status": "completed"} if method == "PATCH" else None
    response = world.client.request(method, path, headers=headers, json=body)
    assert response.status_code == 422, (path, response.status_code, response.text[:200])


def test_an_integer_outside_64_bits_in_a_body_is_422(app: FastAPI, world: World) -> None:
    for field in ("duration_ms",):
        response = world.client.post(
            "/api/v1/runs", json={"task": "t", field: 2**63}, headers=world.headers
        )
        assert response.status_code == 422
        assert loc_of(response) == [["body", field]]
    assert count(app, Run) == 0


def _forged_cursor(values: list[Any], client: TestClient, headers: dict[str, str]) -> str:
    # A real cursor of the listing, with its sort values replaced.
    for i in range(2):
        client.post("/api/v1/runs", json={"task": f"t{i}"}, headers=headers)
    cursor = client.get("/api/v1/runs", params={"limit": 1}, headers=headers).json()["next_cursor"]
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload["v"] = values
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "values",
    [
        ["2025-01-01T00:00:00+00:00", 2**63],
        ["2025-01-01T00:00:00+00:00", -(2**63) - 1],
        ["0001-01-01T00:00:00+14:00", 5],
        ["9999-12-31T23:59:59-14:00", 5],
    ],
)
def test_a_cursor_holding_values_out_of_range_is_422(world: World, values: list[Any]) -> None:
    cursor = _forged_cursor(values, world.client, world.headers)
    response = world.client.get("/api/v1/runs", params={"cursor": cursor}, headers=world.headers)
    assert response.status_code == 422, response.text
    assert loc_of(response) == [["query", "cursor"]]


def test_a_malformed_cursor_is_still_400(world: World) -> None:
    for cursor in ("!!!", base64.urlsafe_b64encode(b"[" * 1500).decode()):
        response = world.client.get(
            "/api/v1/runs", params={"cursor": cursor}, headers=world.headers
        )
        assert response.status_code == 400


OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("stamp", OUT_OF_RANGE)
def test_timestamps_out_of_range_once_offset_applied_are_422(
    app: FastAPI, world: World, stamp: str
) -> None:
    client, headers = world.client, world.headers
    for path, param in (
        ("/api/v1/runs", "since"),
        ("/api/v1/runs", "until"),
        ("/api/v1/runs.csv", "since"),
        ("/api/v1/runs.ndjson", "until"),
        ("/agents/tasks/paged", "since"),
        ("/agents/tasks/paged.csv", "since"),
        ("/api/v1/tasks", "due_before"),
    ):
        response = client.get(path, params={param: stamp}, headers=headers)
        assert response.status_code == 422, (path, param, response.text[:200])
        assert loc_of(response) == [["query", param]]
    for field in ("started_at", "finished_at", "webhook_notified_at"):
        body = {"task": "t", field: stamp}
        response = client.post("/api/v1/runs", json=body, headers=headers)
        assert response.status_code == 422, (field, response.text[:200])
        assert loc_of(response) == [["body", field]]
        batch = client.post("/api/v1/runs:batch", json={"runs": [body]}, headers=headers)
        assert batch.status_code == 422
        assert loc_of(batch) == [["body", "runs", 0, field]]
    task = client.post("/api/v1/tasks", json={"title": "t", "due_date": stamp}, headers=headers)
    assert task.status_code == 422
    assert count(app, Run) == 0 and count(app, Task) == 0


@pytest.mark.parametrize("stamp", ["1700000000", "1700000000.5", "1e9", "  42 "])
def test_numbers_are_not_timestamps(app: FastAPI, world: World, stamp: str) -> None:
    response = world.client.get("/api/v1/runs", params={"since": stamp}, headers=world.headers)
    assert response.status_code == 422
    as_number = world.client.post(
        "/api/v1/runs", json={"task": "t", "started_at": 1700000000}, headers=world.headers
    )
    assert as_number.status_code == 422
    assert count(app, Run) == 0


@pytest.mark.parametrize("flag", ["yes", "true", 1, 0, "1", None])
def test_flags_take_only_json_true_or_false(app: FastAPI, world: World, flag: Any) -> None:
    client, headers = world.client, world.headers
    run = client.post("/api/v1/runs", json={"task": "t", "status": "completed"}, headers=headers)
    run_id = run.json()["id"]
    reopen = client.patch(
        f"/api/v1/runs/{run_id}", json={"status": "running", "reopen": flag}, headers=headers
    )
    assert reopen.status_code == 422, reopen.text
    assert loc_of(reopen) == [["body", "reopen"]]
    assert client.get(f"/api/v1/runs/{run_id}", headers=headers).json()["status"] == "completed"
    agent = client.post("/api/v1/agents", json={"name": "x", "is_active": flag}, headers=headers)
    assert agent.status_code == 422
    superuser = make_user(app, superuser=True)
    admin = bearer(login(client, superuser.email))
    user = client.post(
        "/api/v1/users",
        json={"email": "new@example.com", "password": "long enough", "is_superuser": flag},
        headers=admin,
    )
    assert user.status_code == 422
    with transaction(app) as session:
        assert session.scalar(select(User).where(User.email == "new@example.com")) is None


@pytest.mark.parametrize("flag", ["yes", "1", "True", "on"])
def test_query_flags_take_only_true_or_false(app: FastAPI, world: World, flag: str) -> None:
    superuser = make_user(app, superuser=True)
    admin = bearer(login(world.client, superuser.email))
    for path, name in (
        ("/api/v1/admin/holds", "active"),
        ("/api/v1/admin/stats", "exact"),
        ("/api/v1/agents", "is_active"),
    ):
        headers = world.headers if path == "/api/v1/agents" else admin
        response = world.client.get(path, params={name: flag}, headers=headers)
        assert response.status_code == 422, (path, response.text[:200])
        ok = world.client.get(path, params={name: "true"}, headers=headers)
        assert ok.status_code == 200, (path, ok.text[:200])


def test_text_is_stored_exactly_as_sent(world: World) -> None:
    body = {
        "task": "  spaced task ",
        "run_id": " r1 ",
        "log_excerpt": "\n  indented\ttrace  \n",
        "outputs_uri": " s3://bucket/key ",
        "approver": " ann ",
    }
    created = world.client.post("/api/v1/runs", json=body, headers=world.headers)
    assert created.status_code == 201
    stored = world.client.get(f"/api/v1/runs/{created.json()['id']}", headers=world.headers)
    assert {k: stored.json()[k] for k in body} == body
    agent = world.client.post(
        "/api/v1/agents", json={"name": " a ", "nickname": "\tn"}, headers=world.headers
    )
    assert (agent.json()["name"], agent.json()["nickname"]) == (" a ", "\tn")


def test_finished_before_started_is_422(app: FastAPI, world: World) -> None:
    client, headers = world.client, world.headers
    backwards = {
        "task": "t",
        "status": "completed",
        "started_at": "2025-01-02T00:00:00Z",
        "finished_at": "2025-01-01T23:59:59Z",
    }
    response = client.post("/api/v1/runs", json=backwards, headers=headers)
    assert response.status_code == 422 and loc_of(response) == [["body", "finished_at"]]
    batch = client.post(
        "/api/v1/runs:batch", json={"runs": [{"task": "ok"}, backwards]}, headers=headers
    )
    assert batch.status_code == 422 and loc_of(batch) == [["body", "runs", 1, "finished_at"]]
    seed = client.post("/agents/tasks/", json=backwards, headers=headers)
    assert seed.status_code == 422
    assert count(app, Run) == 0

    started = client.post(
        "/api/v1/runs",
        json={"task": "t", "started_at": "2025-01-02T00:00:00Z"},
        headers=headers,
    ).json()
    update = client.patch(
        f"/api/v1/runs/{started['id']}",
        json={"status": "completed", "finished_at": "2025-01-01T00:00:00Z"},
        headers=headers,
    )
    assert update.status_code == 422 and loc_of(update) == [["body", "finished_at"]]
    assert client.get(f"/api/v1/runs/{started['id']}", headers=headers).json()["status"] == (
        "queued"
    )
    # Only a finish sent, earlier than now: the run started then, not after it finished.
    late = client.post(
        "/api/v1/runs",
        json={"task": "t", "status": "completed", "finished_at": "2025-01-01T00:00:00Z"},
        headers=headers,
    )
    assert late.status_code == 201
    assert late.json()["started_at"] == late.json()["finished_at"] == "2025-01-01T00:00:00Z"


def test_a_422_never_echoes_its_input(app: FastAPI, world: World) -> None:
    superuser = make_user(app, superuser=True)
    admin = bearer(login(world.client, superuser.email))
    response = world.client.post(
        "/api/v1/users",
        json={"email": "not an email", "password": "hunter2-secret-value"},
        headers=admin,
    )
    assert response.status_code == 422
    assert "hunter2" not in response.text and "not an email" not in response.text
    assert all(set(item) == {"loc", "msg", "type"} for item in response.json()["detail"])


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/runs", "GET, POST"),
        ("DELETE", "/api/v1/runs", "GET, POST"),
        ("PUT", "/api/v1/runs/1", "DELETE, GET, PATCH"),
        ("PATCH", "/agents/tasks/before", "DELETE"),
        ("GET", "/agents/tasks/before", "DELETE"),
        ("POST", "/agents/tasks/5", "PATCH"),
        ("DELETE", "/api/v1/auth/token", "POST"),
        ("PATCH", "/api/v1/agents", "GET, POST"),
    ],
)
def test_unsupported_methods_are_405_naming_every_allowed_method(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("param", ["q", "task", "agent", "run_id", "approval_state"])
@pytest.mark.parametrize(
    "path", ["/api/v1/runs", "/api/v1/runs.csv", "/api/v1/runs.ndjson", "/agents/tasks/paged.csv"]
)
def test_nul_in_a_query_parameter_is_422_before_any_export_starts(
    world: World, path: str, param: str
) -> None:
    response = world.client.get(path, params={param: "a\x00b"}, headers=world.headers)
    # Accepted, an export would start streaming and then break off on PostgreSQL.
    assert response.status_code == 422, response.text
    assert loc_of(response) == [["query", param]]
