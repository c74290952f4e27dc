"""The spike guard (429, Retry-After, alert, recovery), the seed prune endpoint, and the
PostgreSQL ``agents_tasks_prune`` function."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from taskledger.api import create_app
from taskledger.enums import HoldScope
from taskledger.retention.archive.reader import read_manifest
from taskledger.retention.plan import holds
from taskledger.settings import Settings
from taskledger.store import make_session_factory
from taskledger.store.models import DeletionEvent, RetentionRun, Run
from tests.conftest import ADMIN_KEY
from tests.helpers import changed, key_headers, state_of, transaction
from tests.retention.engine_helpers import count, old_and_new_runs, populated


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()


def _client(settings: Settings, engine: Engine, **changes: object) -> TestClient:
    return TestClient(create_app(changed(settings, **changes), engine=engine))


def test_spike_guard_trips_alerts_and_recovers(
    settings: Settings, engine: Engine, webhook: str
) -> None:
    # A window far longer than the test lasts, however loaded the machine: the deletes are
    # surely in it when the fourth is refused. It is drained by ageing its events, not by waiting.
    window = 600
    with _client(
        settings,
        engine,
        retention__spike_max_rows=3,
        retention__spike_window_seconds=window,
        retention__alert_webhook_url=webhook,
    ) as client:
        app = client.app
        _, headers = key_headers(app)  # type: ignore[arg-type]
        ids = [
            client.post("/api/v1/runs", json={"task": "t"}, headers=headers).json()["id"]
            for _ in range(5)
        ]
        first = datetime.now(UTC)
        for run_id in ids[:3]:
            assert client.delete(f"/api/v1/runs/{run_id}", headers=headers).status_code == 204
        refused = client.delete(f"/api/v1/runs/{ids[3]}", headers=headers)
        assert refused.status_code == 429
        # Until the first of the three deletes leaves the window.
        waited = (datetime.now(UTC) - first).total_seconds()
        assert window - waited - 1 <= int(refused.headers["retry-after"]) <= window
        assert "spike" in refused.json()["detail"]
        with transaction(app) as session:  # type: ignore[arg-type]
            assert session.get(Run, ids[3]) is not None
        state_of(app).alerter.close()  # wait for the webhook delivery  # type: ignore[arg-type]
        assert _Hook.received and _Hook.received[0]["alert"] == "deletion_spike"
        assert _Hook.received[0]["max_rows"] == 3
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        assert families["taskledger_spike_alerts"].samples[0].value >= 1
        with transaction(app) as session:  # type: ignore[arg-type]
            for event in session.scalars(select(DeletionEvent)):
                event.occurred_at -= timedelta(seconds=window)
        # The window has drained: the same delete now goes through.
        assert client.delete(f"/api/v1/runs/{ids[3]}", headers=headers).status_code == 204


def test_api_deletes_are_archived_and_audited(app, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    _project, headers = key_headers(app)
    run = client.post(
        "/api/v1/runs", json={"task": "t", "inputs": {"a": 1}}, headers=headers
    ).json()
    held = client.post("/api/v1/runs", json={"task": "keep"}, headers=headers).json()
    with transaction(app) as session:
        holds.add_hold(
            session, scope=HoldScope.RUN, target_id=str(held["id"]), reason="x", actor="t"
        )
    assert client.delete(f"/api/v1/runs/{held['id']}", headers=headers).status_code == 409
    assert client.delete(f"/api/v1/runs/{run['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/runs/{run['id']}", headers=headers).status_code == 404
    with transaction(app) as session:
        audit = session.scalars(
            select(RetentionRun).where(
                RetentionRun.policy_name == "api-delete-runs", RetentionRun.outcome == "ok"
            )
        ).one()
        assert audit.trigger == "api" and audit.archive_uri
    manifest = read_manifest(audit.archive_uri)
    assert [(p.table, p.rows) for p in manifest.files] == [("runs", 1)]


def test_seed_endpoint(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=400, days=200)
    cutoff = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)
    with Session(engine) as session:
        expected = session.scalar(select(Run.id).where(Run.started_at < cutoff).limit(1))
        old = count(engine, Run, Run.started_at < cutoff)
        keep_id = expected
    with make_session_factory(engine).begin() as session:
        holds.add_hold(session, scope=HoldScope.RUN, target_id=str(keep_id), reason="x", actor="t")
    params = {"date": cutoff.isoformat().replace("+00:00", "Z")}
    with _client(settings, engine, retention__spike_max_rows=100_000) as client:
        assert client.delete("/agents/tasks/before", params=params).status_code == 403
        wrong = client.delete(
            "/agents/tasks/before", params=params, headers={"X-Admin-Key": "nope"}
        )
        assert wrong.status_code == 403 and wrong.json() == {"detail": "Forbidden"}
        assert (
            client.delete(
                "/agents/tasks/before",
                params={"date": "yesterday"},
                headers={"X-Admin-Key": ADMIN_KEY},
            ).status_code
            == 422
        )
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        assert (
            client.delete(
                "/agents/tasks/before", params={"date": future}, headers={"X-Admin-Key": ADMIN_KEY}
            ).status_code
            == 422
        )
        done = client.delete(
            "/agents/tasks/before", params=params, headers={"X-Admin-Key": ADMIN_KEY}
        )
        assert done.status_code == 200, done.text
        assert done.json() == {"deleted": old - 1, "cutoff": cutoff.isoformat()}
    assert count(engine, Run, Run.started_at < cutoff) == 1  # the held run
    with Session(engine) as session:
        audit = session.scalars(
            select(RetentionRun).where(RetentionRun.trigger == "endpoint")
        ).one()
    assert audit.outcome == "ok" and audit.archive_uri
    assert sum(p.rows for p in read_manifest(audit.archive_uri).files) == old - 1
    with _client(settings, engine, auth__admin_api_key=None) as client:
        unset = client.delete(
            "/agents/tasks/before", params=params, headers={"X-Admin-Key": ADMIN_KEY}
        )
        assert unset.status_code == 403


def _prune(client: TestClient, cutoff: datetime | str):  # type: ignore[no-untyped-def]
    date = cutoff if isinstance(cutoff, str) else cutoff.isoformat().replace("+00:00", "Z")
    return client.delete(
        "/agents/tasks/before", params={"date": date}, headers={"X-Admin-Key": ADMIN_KEY}
    )


def test_a_seed_prune_over_the_spike_limit_succeeds_alerts_and_fills_the_window(
    settings: Settings, engine: Engine, webhook: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, cutoff = old_and_new_runs(engine, old=1500, new=1600)
    # Two replicas on one database: the prune on one fills the window for the other.
    with (
        _client(settings, engine, retention__alert_webhook_url=webhook) as pruner,
        _client(settings, engine) as other,
    ):
        assert state_of(pruner.app).spike_guard.max_rows == 1000  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="taskledger.retention.safeguards.alerts"):
            done = _prune(pruner, cutoff)
        assert done.status_code == 200, done.text
        assert done.json() == {"deleted": 1500, "cutoff": cutoff.isoformat()}
        assert count(engine, Run, Run.started_at < cutoff) == 0
        assert count(engine, Run) == 1600
        assert any("deletion spike" in r.getMessage() for r in caplog.records)
        families = {f.name: f for f in text_string_to_metric_families(pruner.get("/metrics").text)}
        assert families["taskledger_spike_alerts"].samples[0].value == 1
        state_of(pruner.app).alerter.close()  # type: ignore[arg-type]
        assert len(_Hook.received) == 1
        alert = _Hook.received[0]
        assert alert["alert"] == "deletion_spike" and alert["refused"] is False
        assert alert["rows_requested"] == 1500 and alert["source"] == "agents-tasks-before"

        _, headers = key_headers(other.app)  # type: ignore[arg-type]
        run = other.post("/api/v1/runs", json={"task": "t"}, headers=headers).json()
        refused = other.delete(f"/api/v1/runs/{run['id']}", headers=headers)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "spike" in refused.json()["detail"]
    with Session(engine) as session:
        audit = session.scalars(
            select(RetentionRun).where(RetentionRun.trigger == "endpoint")
        ).one()
    assert audit.outcome == "ok" and audit.mode == "execute" and audit.archive_uri
    assert audit.counts["matched"] == 1500 and audit.counts["rules"][0]["affected"] == 1500
    assert sum(p.rows for p in read_manifest(audit.archive_uri).files) == 1500


@pytest.mark.parametrize(
    ("cap", "policy"),
    [
        ("max_rows_per_run", "max_rows_per_run = 1000\n"),
        ("max_table_fraction", "max_table_fraction = 0.4\n"),
    ],
)
def test_a_seed_prune_over_a_cap_is_refused_naming_the_cap_and_the_command(
    settings: Settings, engine: Engine, tmp_path: Path, cap: str, policy: str
) -> None:
    _, cutoff = old_and_new_runs(engine, old=1200, new=1600)
    policy_file = tmp_path / "capped.toml"
    policy_file.write_text(f'name = "capped"\n{policy}', encoding="utf-8")
    with _client(settings, engine, retention__policy=str(policy_file)) as client:
        refused = _prune(client, cutoff)
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert cap in detail and "'capped'" in detail
        stamp = cutoff.isoformat().replace("+00:00", "Z")
        assert f"taskledger runs prune --before {stamp} --force --reason" in detail
    assert count(engine, Run) == 2800
    with Session(engine) as session:
        audit = session.scalars(
            select(RetentionRun).where(RetentionRun.trigger == "endpoint")
        ).one()
        window = session.scalar(select(func.coalesce(func.sum(DeletionEvent.rows), 0)))
    assert audit.outcome == "refused" and cap in (audit.error or "")
    assert audit.archive_uri is None and window == 0


def test_a_seed_prune_respects_holds_on_projects_and_runs(
    settings: Settings, engine: Engine
) -> None:
    held_project, cutoff = old_and_new_runs(engine, old=300, new=700)
    other_project, _ = old_and_new_runs(engine, old=200, new=500)
    with Session(engine) as session:
        held_run = session.scalar(
            select(Run.id).where(Run.project_id == other_project, Run.started_at < cutoff).limit(1)
        )
    with make_session_factory(engine).begin() as session:
        holds.add_hold(
            session, scope=HoldScope.PROJECT, target_id=str(held_project), reason="x", actor="t"
        )
        holds.add_hold(session, scope=HoldScope.RUN, target_id=str(held_run), reason="x", actor="t")
    with _client(settings, engine) as client:
        done = _prune(client, cutoff)
    assert done.status_code == 200, done.text
    assert done.json()["deleted"] == 199
    assert count(engine, Run, Run.started_at < cutoff) == 301


def test_a_seed_prune_in_dry_run_only_mode_deletes_nothing_and_is_audited(
    settings: Settings, engine: Engine
) -> None:
    _, cutoff = old_and_new_runs(engine, old=300, new=700)
    with _client(settings, engine, retention__dry_run_only=True) as client:
        done = _prune(client, cutoff)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "deleted": 0,
        "cutoff": cutoff.isoformat(),
        "dry_run": True,
        "would_delete": 300,
    }
    assert count(engine, Run) == 1000
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun)).one()
        window = session.scalar(select(func.count()).select_from(DeletionEvent))
    assert (audit.trigger, audit.outcome, audit.archive_uri) == ("endpoint", "dry-run", None)
    assert audit.counts["matched"] == 300 and window == 0


@pytest.mark.parametrize(
    "date",
    [
        "1700000000",
        "2020-01-01T00:00:00",
        "2020-01-01",
        "2020-01-01T00:00:00 00:00",  # an unencoded "+" arrives as a space
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2020-02-30T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "yesterday",
        "",
    ],
)
def test_a_seed_prune_takes_only_iso_timestamps_with_an_offset(
    settings: Settings, engine: Engine, date: str
) -> None:
    old_and_new_runs(engine, old=20, new=30)
    with _client(settings, engine) as client:
        response = _prune(client, date)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "date"]
        future = _prune(client, datetime.now(UTC) + timedelta(days=1))
        assert future.status_code == 422 and "future" in future.text
    assert count(engine, Run) == 50
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(RetentionRun)) == 0


def test_postgresql_prune_function(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            names = {
                r[0]
                for r in conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
                )
            }
        assert "agents_tasks_prune" not in names  # SQLite has no functions: nothing created
        return
    populated(engine, runs=300, days=200)
    cutoff = datetime.now(UTC) - timedelta(days=100)
    with Session(engine) as session:
        held_run = session.scalar(select(Run.id).where(Run.started_at < cutoff).limit(1))
        old = count(engine, Run, Run.started_at < cutoff)
    with make_session_factory(engine).begin() as session:
        holds.add_hold(session, scope=HoldScope.RUN, target_id=str(held_run), reason="x", actor="t")
    with engine.begin() as conn:
        deleted = conn.execute(text("SELECT agents_tasks_prune(:c)"), {"c": cutoff}).scalar()
    assert deleted == old - 1
    assert count(engine, Run, Run.started_at < cutoff) == 1
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun).where(RetentionRun.trigger == "sql")).one()
    assert audit.outcome == "ok" and audit.counts["rules"][0]["affected"] == old - 1
    assert audit.actor.startswith("sql:")
    with pytest.raises(Exception, match="NULL"), engine.begin() as conn:
        conn.execute(text("SELECT agents_tasks_prune(NULL)"))
