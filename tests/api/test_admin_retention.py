"""The admin retention API: preview, execute with confirmation, audit log, holds."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from taskledger.api import create_app
from taskledger.settings import Settings
from taskledger.store.models import RetentionRun, Run
from tests.conftest import ADMIN_KEY
from tests.helpers import changed, state_of, transaction
from tests.retention.engine_helpers import populated

ADMIN = {"X-Admin-Key": ADMIN_KEY}


def test_preview_then_execute(app: FastAPI, client: TestClient) -> None:
    populated(state_of(app).engine, runs=800, days=300)
    preview = client.post("/api/v1/admin/retention/preview", json={"preset": "ops"}, headers=ADMIN)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert {r["name"] for r in body["rules"]} == {"runs-completed", "runs-failed", "runs-cancelled"}
    matched = sum(r["matched"] for r in body["rules"])
    assert matched > 0
    with transaction(app) as session:
        before = session.scalar(select(func.count()).select_from(Run))

    wrong = client.post(
        "/api/v1/admin/retention/execute",
        json={"preset": "ops", "confirm": "0" * 32},
        headers=ADMIN,
    )
    assert wrong.status_code == 409
    other_policy = client.post(
        "/api/v1/admin/retention/execute",
        json={"preset": "default", "confirm": body["plan_id"]},
        headers=ADMIN,
    )
    assert other_policy.status_code == 409

    done = client.post(
        "/api/v1/admin/retention/execute",
        json={"preset": "ops", "confirm": body["plan_id"], "force": True, "reason": "old data"},
        headers=ADMIN,
    )
    assert done.status_code == 200, done.text
    report = done.json()
    assert report["outcome"] == "ok" and report["archive_uri"]
    assert sum(r["affected"] for r in report["rules"]) == matched
    with transaction(app) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == before - matched

    log = client.get("/api/v1/admin/retention/runs", headers=ADMIN).json()["items"]
    assert [(r["mode"], r["outcome"]) for r in log[:4]] == [
        ("execute", "ok"),
        ("execute", "refused"),
        ("execute", "refused"),
        ("preview", "ok"),
    ]
    executes = client.get(
        "/api/v1/admin/retention/runs", params={"mode": "execute"}, headers=ADMIN
    ).json()["items"]
    assert all(r["mode"] == "execute" for r in executes)
    metrics = client.get("/metrics").text
    assert 'taskledger_retention_rows_total{action="deleted"' in metrics


def test_inline_policy_and_bad_input(app: FastAPI, client: TestClient) -> None:
    toml = '[[rule]]\nname = "old"\ntable = "runs"\nolder_than = "30d"\naction = "delete"\n'
    ok = client.post("/api/v1/admin/retention/preview", json={"policy": toml}, headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["policy"] == "inline"
    for body in (
        {"preset": "nope"},
        {"policy": "not [valid toml"},
        {"policy": toml.replace('"30d"', '"10m"')},
        {"preset": "ops", "policy": toml},
        {"preset": "ops", "extra": 1},
    ):
        response = client.post("/api/v1/admin/retention/preview", json=body, headers=ADMIN)
        assert response.status_code == 422, body
    assert (
        client.post(
            "/api/v1/admin/retention/execute", json={"preset": "ops"}, headers=ADMIN
        ).status_code
        == 422
    )


def test_holds_api(app: FastAPI, client: TestClient) -> None:
    project_id = populated(state_of(app).engine, runs=50, days=10)
    created = client.post(
        "/api/v1/admin/holds",
        json={"scope": "project", "target_id": str(project_id), "reason": "litigation"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    hold = created.json()
    assert hold["created_by"] == "admin-key" and hold["released_at"] is None
    for body in (
        {"scope": "project", "target_id": "not-a-uuid", "reason": "x"},
        {"scope": "run", "target_id": "99999999", "reason": "x"},
    ):
        assert client.post("/api/v1/admin/holds", json=body, headers=ADMIN).status_code == 404
    assert (
        client.post(
            "/api/v1/admin/holds",
            json={"scope": "galaxy", "target_id": "1", "reason": "x"},
            headers=ADMIN,
        ).status_code
        == 422
    )
    active = client.get("/api/v1/admin/holds", params={"active": True}, headers=ADMIN).json()
    assert [h["id"] for h in active["items"]] == [hold["id"]]
    released = client.post(f"/api/v1/admin/holds/{hold['id']}/release", headers=ADMIN)
    assert released.status_code == 200 and released.json()["released_at"]
    again = client.post(f"/api/v1/admin/holds/{hold['id']}/release", headers=ADMIN)
    assert again.status_code == 409
    assert client.post("/api/v1/admin/holds/424242/release", headers=ADMIN).status_code == 404
    assert (
        client.get("/api/v1/admin/holds", params={"active": True}, headers=ADMIN).json()["items"]
        == []
    )


def test_preview_estimates_archive_size_at_the_configured_gzip_level(
    settings: Settings, engine: Engine
) -> None:
    populated(engine, runs=600, days=300)
    totals = {}
    for level in (1, 9):
        app = create_app(changed(settings, archive__gzip_level=level), engine=engine)
        with TestClient(app) as client:
            preview = client.post(
                "/api/v1/admin/retention/preview", json={"preset": "ops"}, headers=ADMIN
            )
        assert preview.status_code == 200, preview.text
        totals[level] = sum(r["estimated_archive_bytes"] for r in preview.json()["rules"])
    assert totals[1] > totals[9] > 0


def _preview(client: TestClient, **body: object) -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/api/v1/admin/retention/preview", json={"preset": "ops", **body}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _execute(client: TestClient, plan_id: str, **body: object):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/admin/retention/execute",
        json={"preset": "ops", "confirm": plan_id, "force": True, "reason": "old", **body},
        headers=ADMIN,
    )


def _runs(app: FastAPI) -> int:
    with transaction(app) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def test_a_plan_executes_once(app: FastAPI, client: TestClient) -> None:
    populated(state_of(app).engine, runs=600, days=300)
    plan = _preview(client)
    matched = sum(r["matched"] for r in plan["rules"])
    before = _runs(app)
    first = _execute(client, plan["plan_id"])
    assert first.status_code == 200, first.text
    execution = first.json()["retention_run_id"]
    assert _runs(app) == before - matched
    populated(state_of(app).engine, runs=300, days=300, seed=2)  # more old rows: still refused
    after_first = _runs(app)
    for _ in range(2):
        again = _execute(client, plan["plan_id"])
        assert again.status_code == 409, again.text
        detail = again.json()["detail"]
        assert f"already executed by retention run {execution}" in detail
        assert "single-use" in detail and "Preview again" in detail
    assert _runs(app) == after_first
    log = client.get("/api/v1/admin/retention/runs", headers=ADMIN).json()["items"]
    assert [(r["mode"], r["outcome"]) for r in log[:3]] == [
        ("execute", "refused"),
        ("execute", "refused"),
        ("execute", "ok"),
    ]
    assert "single-use" in log[0]["error"]
    preview_row = next(r for r in log if r["mode"] == "preview")
    assert preview_row["plan_id"] == plan["plan_id"] and preview_row["consumed_by"] == execution


def test_a_plan_expires_after_the_ttl(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=400, days=300)
    app = create_app(changed(settings, retention__plan_ttl=60), engine=engine)
    with TestClient(app) as client:
        plan = _preview(client)
        with transaction(app) as session:  # the preview was made 61 s ago
            row = session.scalars(
                select(RetentionRun).where(RetentionRun.plan_id == plan["plan_id"])
            ).one()
            row.started_at = row.started_at - timedelta(seconds=61)
        before = _runs(app)
        refused = _execute(client, plan["plan_id"])
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "TASKLEDGER_RETENTION_PLAN_TTL (60 s)" in detail and "expired" in detail
        assert "previewed at" in detail and "Preview again" in detail
        assert _runs(app) == before
        log = client.get("/api/v1/admin/retention/runs", headers=ADMIN).json()["items"]
        assert (log[0]["mode"], log[0]["outcome"]) == ("execute", "refused")
        assert "expired" in log[0]["error"]
        # A fresh preview of the same policy runs.
        fresh = _execute(client, _preview(client)["plan_id"])
        assert fresh.status_code == 200, fresh.text


def test_a_refused_execution_leaves_its_plan_unused(app: FastAPI, client: TestClient) -> None:
    populated(state_of(app).engine, runs=600, days=300)
    plan = _preview(client)
    before = _runs(app)
    unforced = _execute(client, plan["plan_id"], force=False, reason=None)
    assert unforced.status_code == 409 and "max_table_fraction" in unforced.json()["detail"]
    assert _runs(app) == before
    forced = _execute(client, plan["plan_id"])
    assert forced.status_code == 200, forced.text
    assert _execute(client, plan["plan_id"]).status_code == 409


def test_dry_run_only_executions_do_not_spend_the_plan(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=400, days=300)
    dry = changed(settings, retention__dry_run_only=True)
    with TestClient(create_app(dry, engine=engine)) as client:
        plan = _preview(client)
        for _ in range(2):
            response = _execute(client, plan["plan_id"])
            assert response.status_code == 200 and response.json()["outcome"] == "dry-run"
    with TestClient(create_app(settings, engine=engine)) as client:
        assert _execute(client, plan["plan_id"]).json()["outcome"] == "ok"
        assert _execute(client, plan["plan_id"]).status_code == 409
    with TestClient(create_app(dry, engine=engine)) as client:
        spent = _execute(client, plan["plan_id"])
        assert spent.status_code == 409 and "single-use" in spent.json()["detail"]


def test_safety_flags_take_only_json_booleans(app: FastAPI, client: TestClient) -> None:
    populated(state_of(app).engine, runs=300, days=300)
    plan = _preview(client)
    before = _runs(app)
    for flag in ("yes", "true", 1, 0, "1", None):
        response = _execute(client, plan["plan_id"], force=flag)
        assert response.status_code == 422, (flag, response.text)
        assert response.json()["detail"][0]["loc"][-1] == "force"
    for flag in ("true", "false", 1, 0):
        response = client.post(
            "/api/v1/admin/restore", json={"uri": "2026/01/x", "dry_run": flag}, headers=ADMIN
        )
        assert response.status_code == 422, (flag, response.text)
        assert response.json()["detail"][0]["loc"][-1] == "dry_run"
    assert _runs(app) == before
    assert _execute(client, plan["plan_id"], force=True).status_code == 200


def test_refusals_are_declared_with_their_body(app: FastAPI) -> None:
    spec = app.openapi()
    refusal = {"$ref": "#/components/schemas/ErrorMessage"}
    assert spec["components"]["schemas"]["ErrorMessage"]["properties"] == {
        "detail": {"type": "string", "title": "Detail"}
    }
    execute = spec["paths"]["/api/v1/admin/retention/execute"]["post"]["responses"]
    assert execute["409"]["content"]["application/json"]["schema"] == refusal
    prune = spec["paths"]["/agents/tasks/before"]["delete"]["responses"]
    # The spike window never refuses it (no 429); 503 is a database that cannot answer.
    assert set(prune) == {"200", "403", "409", "422", "503"}
    assert prune["409"]["content"]["application/json"]["schema"] == refusal
    force = spec["components"]["schemas"]["ExecuteRequest"]["properties"]["force"]
    assert force["type"] == "boolean"
