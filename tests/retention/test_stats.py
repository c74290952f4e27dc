"""Stats per table match independent SQL, through the API and the command line too."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.enums import HoldScope, RetentionTrigger
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.request import RetentionRequest
from taskledger.retention.execute.runner import preview_policy
from taskledger.retention.plan import holds
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.stats import BUCKETS, collect_stats
from taskledger.settings import Settings
from taskledger.store import make_session_factory
from taskledger.store.models import Run
from taskledger.store.types import utcnow
from tests.conftest import ADMIN_KEY
from tests.retention.engine_helpers import populated, sessions_of


def _sql_time(engine: Engine, moment):  # type: ignore[no-untyped-def]
    return (
        moment.replace(tzinfo=None).isoformat(" ", "microseconds")
        if engine.dialect.name == "sqlite"
        else moment
    )


def test_stats_match_independent_sql(engine: Engine, tmp_path: Path) -> None:
    project_id = populated(engine, runs=3000, days=500)
    with make_session_factory(engine).begin() as session:
        holds.add_hold(
            session, scope=HoldScope.PROJECT, target_id=str(project_id), reason="x", actor="t"
        )
    other = populated(engine, runs=1000, days=500, seed=5)
    assert other
    now = utcnow()
    report = collect_stats(engine, PRESETS["default"], exact=True, now=now)
    runs = next(t for t in report.tables if t.table == "runs")
    with engine.connect() as conn:
        assert runs.rows == conn.execute(text("SELECT count(*) FROM runs")).scalar() == 4000
        for label, low, high in BUCKETS:
            where = "started_at <= :lo" + ("" if high is None else " AND started_at > :hi")
            params = {"lo": _sql_time(engine, now - timedelta(days=low))}
            if high is not None:
                params["hi"] = _sql_time(engine, now - timedelta(days=high))
            expected = conn.execute(text(f"SELECT count(*) FROM runs WHERE {where}"), params)
            assert runs.histogram[label] == expected.scalar(), label
        held = conn.execute(
            text("SELECT count(*) FROM runs WHERE project_id = :p"),
            {"p": project_id.hex if engine.dialect.name == "sqlite" else project_id},
        ).scalar()
    assert runs.held == held == 3000
    with engine.connect() as conn:
        for table in [*report.tables, report.audit_log]:
            counted = conn.execute(text(f"SELECT count(*) FROM {table.table}")).scalar()
            assert table.rows == counted, table.table
    with Session(engine) as session:
        assert runs.oldest == session.scalar(select(func.min(Run.started_at)))
        assert runs.newest == session.scalar(select(func.max(Run.started_at)))
    request = RetentionRequest(
        actor="t",
        trigger=RetentionTrigger.CLI,
        policy=PRESETS["default"],
        archive=ArchiveTarget(str(tmp_path)),
    )
    preview = preview_policy(sessions_of(engine), request, now=now)
    for table in report.tables:
        assert table.eligible == sum(r.matched for r in preview.rules if r.table == table.table)
    assert runs.eligible > 0
    assert report.audit_log.rows == 0  # the preview above came after the stats
    if engine.dialect.name == "postgresql":
        assert runs.bytes and runs.bytes > 0
    estimate = collect_stats(engine, PRESETS["default"], now=now)
    estimated_runs = next(t for t in estimate.tables if t.table == "runs")
    if engine.dialect.name == "postgresql":
        assert estimated_runs.bytes and estimated_runs.bytes > 0
    else:
        assert estimated_runs.rows == 4000 and estimated_runs.bytes is None


def test_stats_api_and_cli(settings: Settings, engine: Engine, client: TestClient) -> None:
    populated(engine, runs=500, days=100)
    response = client.get(
        "/api/v1/admin/stats", params={"exact": True}, headers={"X-Admin-Key": ADMIN_KEY}
    )
    assert response.status_code == 200
    body = response.json()
    assert {t["table"] for t in body["tables"]} >= {"runs", "tasks", "acknowledgements"}
    assert body["audit_log"]["table"] == "retention_runs"
    runs = next(t for t in body["tables"] if t["table"] == "runs")
    assert runs["rows"] == 500 and set(runs["histogram"]) == {b[0] for b in BUCKETS}
    assert client.get("/api/v1/admin/stats").status_code == 401
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, ["stats", "--exact", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        next(t for t in json.loads(result.stdout)["tables"] if t["table"] == "runs")["rows"] == 500
    )
    table = CliRunner().invoke(cli, ["stats"], env=env)
    assert table.exit_code == 0 and "runs" in table.stdout
