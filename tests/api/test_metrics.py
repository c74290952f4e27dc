"""``/metrics`` exposes what SPEC section 9 lists, and the figures move with the work done."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_KEY
from tests.helpers import key_headers, state_of
from tests.retention.engine_helpers import populated


def _samples(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_metrics_follow_the_work(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    client.post("/api/v1/runs", json={"task": "t"}, headers=headers)
    client.post(
        "/api/v1/runs:batch", json={"runs": [{"task": "a"}, {"task": "b"}]}, headers=headers
    )
    populated(state_of(app).engine, runs=400, days=200)
    admin = {"X-Admin-Key": ADMIN_KEY}
    plan = client.post(
        "/api/v1/admin/retention/preview", json={"preset": "default"}, headers=admin
    ).json()
    done = client.post(
        "/api/v1/admin/retention/execute",
        json={"preset": "default", "confirm": plan["plan_id"], "force": True, "reason": "metrics"},
        headers=admin,
    )
    assert done.status_code == 200, done.text
    samples = _samples(client)
    assert samples["taskledger_runs_recorded_total"][0][1] == 3
    by_action: dict[str, float] = {}
    for labels, value in samples["taskledger_retention_rows_total"]:
        assert labels["rule"] and labels["table"]
        by_action[labels["action"]] = by_action.get(labels["action"], 0) + value
    affected = sum(r["affected"] for r in done.json()["rules"])
    assert by_action["archived"] == affected
    assert (
        by_action["deleted"] + by_action.get("scrubbed", 0) + by_action.get("expired", 0)
        == affected
    )
    assert samples["taskledger_retention_duration_seconds_count"][0][1] == 1
    assert samples["taskledger_retention_last_success_timestamp_seconds"][0][1] > 0
    routes = {labels["route"] for labels, _ in samples["taskledger_http_requests_total"]}
    assert {"/api/v1/runs", "/api/v1/runs:batch", "/api/v1/admin/retention/execute"} <= routes
    assert "taskledger_spike_alerts_total" in samples
