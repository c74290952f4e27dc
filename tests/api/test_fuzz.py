"""Fuzzing: schemathesis over the app's own OpenAPI document, in-process (SPEC section 11).

Every operation is called with generated requests, valid and invalid, once as a superuser and once
with a read-only project key, on each backend: no answer may be a 5xx, carry a status the document
does not declare, or have a body or content type other than the one declared. Half the examples of
an operation with path parameters use the ids of records that exist, so that the success paths are
reached too, not only the 404s. ``make fuzz`` runs many more examples (``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskledger.enums import HoldScope
from taskledger.retention.plan.holds import add_hold
from tests.helpers import (
    bearer,
    login,
    make_agent,
    make_connection,
    make_instruction,
    make_key,
    make_project,
    make_session,
    make_task,
    make_user,
    transaction,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
#: Headers the caller's credentials set; generated values for them are dropped.
CREDENTIAL_HEADERS = ("X-Admin-Key", "X-API-Key", "Authorization")


def _seed(app: FastAPI, client: TestClient, role: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Records of every kind, and the headers of ``role``; returns them and their ids."""
    superuser = make_user(app, "fuzz-root@example.com", superuser=True)
    project = make_project(app, superuser, "fuzzed")
    agent = make_agent(app, project)
    task = make_task(app, project)
    session = make_session(app, project, agent)
    connection = make_connection(app, project, agent)
    instruction = make_instruction(app, project, agent)
    write = {"X-API-Key": make_key(app, project, "read", "write")}
    run = client.post("/api/v1/runs", json={"task": "seeded"}, headers=write).json()
    with transaction(app) as db:
        hold = add_hold(
            db, scope=HoldScope.RUN, target_id=str(run["id"]), reason="fuzz", actor="test"
        )
    ids = {
        "project_id": str(project.id),
        "agent_id": str(agent.id),
        "task_id": str(task.id),
        "session_id": str(session.id),
        "connection_id": connection.id,
        "instruction_id": str(instruction.id),
        "run_pk": run["id"],
        "user_id": str(superuser.id),
        "hold_id": hold.id,
    }
    if role == "superuser":
        return bearer(login(client, superuser.email)), ids
    return {"X-API-Key": make_key(app, project, "read")}, ids


def _fuzz(operation: Any, strategy: Any, headers: dict[str, str], found: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        for name in CREDENTIAL_HEADERS:
            if case.headers:
                case.headers.pop(name, None)
        own = {} if operation.path == "/api/v1/auth/token" else headers
        response = case.call(headers=own)
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # one report per failing example, all collected
            found.append(f"{response.status_code}: {str(exc)[:600]}")

    try:
        run()
    except BaseException as exc:
        if "Unsatisfiable" not in type(exc).__name__:  # nothing invalid to send: nothing to test
            found.append(f"{type(exc).__name__}: {str(exc)[:300]}")


@pytest.mark.slow
@pytest.mark.parametrize("role", ["superuser", "read_key"])
def test_fuzzed_requests_get_declared_answers_and_never_a_5xx(
    app: FastAPI, client: TestClient, role: str
) -> None:
    headers, ids = _seed(app, client, role)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so the records they remove are there for every other operation.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    failures: dict[str, list[str]] = defaultdict(list)
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        known = {name: ids[name] for name in names if name in ids}
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if known:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=known)
                )
        for strategy in strategies:
            _fuzz(operation, strategy, headers, failures[operation.label])
    report = {label: sorted(set(found))[:3] for label, found in failures.items() if found}
    assert report == {}, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in report.items())


def test_answers_fuzzing_rarely_reaches_conform_to_the_document(
    app: FastAPI, client: TestClient, backend: str
) -> None:
    """The errors random requests seldom provoke, made on purpose and checked the same way."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    _, ids = _seed(app, client, "superuser")
    write = {"X-API-Key": make_key(app, _project(app, ids), "read", "write")}
    seen: list[tuple[int, str]] = []

    def conforms(method: str, template: str, response: Any) -> None:
        operation = schema[template][method]
        declared = operation.definition.raw["responses"]
        assert str(response.status_code) in declared, (method, template, response.status_code)
        operation.validate_response(response)  # the body, its content type and headers
        seen.append((response.status_code, template))

    def task(title: str, **extra: Any) -> dict[str, Any]:
        body = {"title": title, **extra}
        created: dict[str, Any] = client.post("/api/v1/tasks", json=body, headers=write).json()
        return created

    first = task("first")
    second = task("second", dependencies=[first["id"]])
    cycle = client.patch(
        f"/api/v1/tasks/{first['id']}", json={"dependencies": [second["id"]]}, headers=write
    )
    assert cycle.status_code == 409 and isinstance(cycle.json()["detail"], dict)
    conforms("PATCH", "/api/v1/tasks/{task_id}", cycle)
    with pytest.raises(BaseException, match="schema"):  # the check can fail: this 409 is a text
        schema["/api/v1/admin/retention/execute"]["POST"].validate_response(cycle)
    blocked = client.post(
        f"/api/v1/tasks/{second['id']}/status", json={"status": "in_progress"}, headers=write
    )
    assert blocked.status_code == 409 and "blocked_by" in blocked.json()["detail"]
    conforms("POST", "/api/v1/tasks/{task_id}/status", blocked)
    depended = client.delete(f"/api/v1/tasks/{first['id']}", headers=write)
    assert depended.status_code == 409
    conforms("DELETE", "/api/v1/tasks/{task_id}", depended)

    nobody = client.get("/api/v1/runs")
    assert nobody.status_code == 401
    conforms("GET", "/api/v1/runs", nobody)
    read_only = {"X-API-Key": make_key(app, _project(app, ids), "read")}
    refused = client.post("/api/v1/runs", json={"task": "t"}, headers=read_only)
    assert refused.status_code == 403
    conforms("POST", "/api/v1/runs", refused)
    huge = client.post("/api/v1/runs", content=b"x" * (1024 * 1024 + 1), headers=write)
    assert huge.status_code == 413
    conforms("POST", "/api/v1/runs", huge)
    deep = client.post(
        "/api/v1/runs",
        content='{"task": "t", "inputs": ' + "[" * 5000 + "]" * 5000 + "}",
        headers={**write, "content-type": "application/json"},
    )
    assert deep.status_code == 422
    conforms("POST", "/api/v1/runs", deep)
    bad_cursor = client.get("/api/v1/runs", params={"cursor": "e30"}, headers=write)
    assert bad_cursor.status_code == 400
    conforms("GET", "/api/v1/runs", bad_cursor)
    csv = client.get("/api/v1/runs.csv", headers=write)
    assert csv.status_code == 200
    conforms("GET", "/api/v1/runs.csv", csv)
    ndjson = client.get("/api/v1/runs.ndjson", headers=write)
    conforms("GET", "/api/v1/runs.ndjson", ndjson)
    held = client.delete(f"/api/v1/runs/{ids['run_pk']}", headers=write)
    assert held.status_code == 409  # under the hold _seed placed
    conforms("DELETE", "/api/v1/runs/{run_pk}", held)
    assert len(seen) == 11


def _project(app: FastAPI, ids: dict[str, Any]) -> Any:
    from taskledger.store.models import Project

    with transaction(app) as session:
        return session.get(Project, uuid.UUID(ids["project_id"]))
