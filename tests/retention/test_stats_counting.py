"""How stats reach their figures: counted from either side of each age boundary, rules counted
in parts, and on PostgreSQL estimated from the planner's statistics of every leaf."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, and_, func, select, text, true
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from taskledger.cli import cli
from taskledger.enums import HoldScope
from taskledger.retention import stats as stats_module
from taskledger.retention.plan import holds
from taskledger.retention.plan.preview import make_plan, preview
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy
from taskledger.retention.policy.tables import TABLES
from taskledger.retention.stats import BUCKETS, StatsReport, collect_stats
from taskledger.retention.stats_planner import Distribution, leaves
from taskledger.settings import Settings
from taskledger.store import make_engine, make_session_factory
from taskledger.store.partitions import list_partitions
from taskledger.store.types import utcnow
from tests.conftest import ADMIN_KEY
from tests.retention.engine_helpers import populated

# Cutoffs on no bucket boundary, from either end of the data, and a status filter per rule.
OFF_BOUNDARY = parse_policy(
    """
    [[rule]]
    name = "young-runs"
    table = "runs"
    older_than = "14d"
    action = "delete"
    status = ["completed", "failed", "cancelled"]

    [[rule]]
    name = "old-acks"
    table = "acknowledgements"
    older_than = "300d"
    action = "delete"
    allow_audit_deletion = true

    [[rule]]
    name = "old-instructions"
    table = "instructions"
    older_than = "200d"
    action = "expire"
    """,
    default_name="off-boundary",
)
POLICIES = [
    *(PRESETS[name] for name in ("default", "development", "ops", "scientific")),
    OFF_BOUNDARY,
]


def _independent(engine: Engine, report: StatsReport, now: datetime, policy: Policy) -> None:
    """Every table's rows, buckets, ends, eligible and held rows against plain SQL and the
    preview, which counts each rule's condition in one piece."""
    with Session(engine) as session, session.begin():
        matched = {}
        for rule in preview(session, make_plan(session, policy, now)).rules:
            matched[rule.table] = matched.get(rule.table, 0) + rule.matched
        held = holds.active_holds(session)
        for stats in report.tables:
            entry = TABLES[stats.table]
            table = entry.model.__table__
            age = table.c[entry.default_age_column]

            def count(*conditions: Any, _table: Any = table) -> int:
                query = select(func.count()).select_from(_table).where(and_(true(), *conditions))
                return int(session.scalar(query) or 0)

            assert stats.rows == count() and stats.rows_exact, stats.table
            assert stats.histogram_exact, stats.table
            for label, low, high in BUCKETS:
                conditions = [age <= now - timedelta(days=low)]
                if high is not None:
                    conditions.append(age > now - timedelta(days=high))
                assert stats.histogram[label] == count(*conditions), (stats.table, label)
            assert stats.oldest == session.scalar(select(func.min(age))), stats.table
            assert stats.newest == session.scalar(select(func.max(age))), stats.table
            assert stats.eligible == matched.get(stats.table, 0), (policy.name, stats.table)
            assert stats.held == (count(held.held(stats.table)) if held else 0), stats.table


@pytest.mark.parametrize("days", [0.5, 5, 60, 200, 900])
def test_counted_figures_wherever_the_rows_lie(engine: Engine, days: float) -> None:
    # Data within hours, days or years of now moves the bucket left uncounted from end to end.
    populated(engine, runs=400, days=days, seed=3)
    now = utcnow()
    for policy in POLICIES:
        _independent(engine, collect_stats(engine, policy, exact=True, now=now), now, policy)


def test_counted_figures_with_rows_in_the_future_and_undated(engine: Engine) -> None:
    populated(engine, runs=300, days=100, seed=4)
    now = utcnow()
    with engine.begin() as conn:  # a clock ahead of the server's; tasks never completed
        conn.execute(
            text("UPDATE runs SET started_at = :t WHERE id % 7 = 0"),
            {"t": _at(engine, now + timedelta(hours=3))},
        )
    report = collect_stats(engine, PRESETS["default"], exact=True, now=now)
    runs = next(t for t in report.tables if t.table == "runs")
    assert sum(runs.histogram.values()) < runs.rows
    tasks = next(t for t in report.tables if t.table == "tasks")
    assert sum(tasks.histogram.values()) < tasks.rows  # some tasks have no completed_at
    _independent(engine, report, now, PRESETS["default"])


@pytest.mark.parametrize("split", range(len(BUCKETS)))
def test_every_split_gives_the_same_figures(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, split: int
) -> None:
    # Which bucket is left uncounted is a guess about cost; the figures never depend on it.
    populated(engine, runs=500, days=500, seed=6)
    now = utcnow()
    monkeypatch.setattr(stats_module._Spread, "cheapest_split", lambda self, bounds: split)
    for policy in (PRESETS["default"], OFF_BOUNDARY):
        _independent(engine, collect_stats(engine, policy, exact=True, now=now), now, policy)


def test_rules_under_holds_are_counted_in_one_piece(engine: Engine) -> None:
    project_id = populated(engine, runs=600, days=300, seed=8)
    populated(engine, runs=300, days=300, seed=9)
    with make_session_factory(engine).begin() as session:
        holds.add_hold(
            session, scope=HoldScope.PROJECT, target_id=str(project_id), reason="x", actor="t"
        )
    now = utcnow()
    for policy in POLICIES:
        report = collect_stats(engine, policy, exact=True, now=now)
        _independent(engine, report, now, policy)
    runs = next(t for t in report.tables if t.table == "runs")
    assert runs.held == 600


def test_empty_tables(engine: Engine) -> None:
    report = collect_stats(engine, PRESETS["default"], exact=True)
    for stats in report.tables:
        assert stats.rows == 0 and set(stats.histogram.values()) == {0}, stats.table
        assert stats.eligible == stats.held == 0 and stats.oldest is None


def test_the_cheapest_split_leaves_the_fullest_bucket_uncounted() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    bounds = [now - timedelta(days=low) for _, low, _ in BUCKETS]

    def split(oldest_days: float, newest_days: float) -> int:
        spread = stats_module._Spread(
            now - timedelta(days=oldest_days), now - timedelta(days=newest_days), 1000
        )
        return spread.cheapest_split(bounds)

    assert split(0.5, 0) == 0  # all within a day: every boundary counted from the old end
    assert split(900, 400) == 5  # all over a year old: every boundary from the new end
    assert split(180, 0) == 4  # the bench's spread: 90-365d is half the rows
    assert split(60, 0) == 3


def test_histogram_shares_from_planner_statistics() -> None:
    t = [datetime(2026, 1, day, tzinfo=UTC) for day in (1, 3, 5)]
    plain = Distribution(null_frac=0.0, common=[], bounds=t)
    assert plain.share_at_or_before(t[0] - timedelta(days=1)) == 0
    assert plain.share_at_or_before(t[0]) == 0
    assert plain.share_at_or_before(t[0] + timedelta(days=1)) == pytest.approx(0.25)
    assert plain.share_at_or_before(t[1]) == pytest.approx(0.5)
    assert plain.share_at_or_before(t[2]) == 1
    # A fifth NULL, a tenth on one common value, the rest spread by the histogram.
    mixed = Distribution(null_frac=0.2, common=[(t[1], 0.1)], bounds=[t[0], t[2]])
    assert mixed.share_at_or_before(t[0] - timedelta(days=1)) == 0
    assert mixed.share_at_or_before(t[1]) == pytest.approx(0.1 + 0.7 * 0.5)
    assert mixed.share_at_or_before(t[2]) == pytest.approx(0.8)


def _at(engine: Engine, moment: datetime) -> Any:
    return (
        moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if engine.dialect.name == "sqlite"
        else moment
    )


@pytest.fixture
def postgresql(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")
    return engine


@pytest.fixture
def probes(postgresql: Engine) -> Iterator[Engine]:
    """PostgreSQL, with the probe tables a test makes dropped afterwards."""
    yield postgresql
    with postgresql.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS leaf_probe, estimate_probe"))


def test_estimates_from_the_planner_on_a_plain_table(
    postgresql: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    populated(postgresql, runs=3000, days=400, seed=2)
    monkeypatch.setattr(stats_module, "ESTIMATE_FROM_ROWS", 1000)
    now = utcnow()
    exact = collect_stats(postgresql, PRESETS["default"], exact=True, now=now)
    with postgresql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    estimated = collect_stats(postgresql, PRESETS["default"], now=now)
    by_name = {t.table: t for t in exact.tables}
    for stats in estimated.tables:
        counted = by_name[stats.table]
        assert stats.to_dict().keys() == counted.to_dict().keys()
        # Eligible, held, oldest and newest stay exact whichever way rows are found.
        assert (stats.eligible, stats.held) == (counted.eligible, counted.held), stats.table
        assert (stats.oldest, stats.newest) == (counted.oldest, counted.newest), stats.table
        if stats.table != "runs":  # under the threshold: counted
            assert {**stats.to_dict(), "bytes": 0} == {**counted.to_dict(), "bytes": 0}
            continue
        assert not stats.rows_exact and not stats.histogram_exact
        assert stats.rows == pytest.approx(counted.rows, rel=0.01)
        assert set(stats.histogram) == set(counted.histogram)
        for label, rows in counted.histogram.items():
            assert abs(stats.histogram[label] - rows) <= 0.03 * counted.rows, label
        assert stats.bytes == counted.bytes and stats.bytes > 0
    assert estimated.to_dict()["tables"][1]["histogram_exact"] is False


def test_leaves_of_a_partitioned_table(probes: Engine) -> None:
    # The same reading as for runs when it is partitioned: every partition is a leaf, the
    # partitioned parent is not; a partition never analysed has no statistics.
    with probes.begin() as conn:
        conn.execute(
            text(
                "DROP TABLE IF EXISTS leaf_probe;"
                "CREATE TABLE leaf_probe (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
                "CREATE TABLE leaf_probe_p202601 PARTITION OF leaf_probe"
                " FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');"
                "CREATE TABLE leaf_probe_p202602 PARTITION OF leaf_probe"
                " FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');"
                "CREATE TABLE leaf_probe_default PARTITION OF leaf_probe DEFAULT;"
                "INSERT INTO leaf_probe"
                " SELECT '2026-01-01'::timestamptz + n * interval '1 minute'"
                " FROM generate_series(0, 50000) AS n;"
                "ANALYZE leaf_probe_p202601, leaf_probe_p202602;"
            )
        )
    with Session(probes) as session:
        found = {leaf.name: leaf for leaf in leaves(session, "leaf_probe", "at")}
        runs = leaves(session, "runs", "started_at")
        partitions = [p.name for p in list_partitions(session.connection())]
    assert set(found) == {"leaf_probe_p202601", "leaf_probe_p202602", "leaf_probe_default"}
    january, february = found["leaf_probe_p202601"], found["leaf_probe_p202602"]
    assert january.reltuples + february.reltuples == pytest.approx(50001, rel=0.01)
    default = found["leaf_probe_default"]
    assert not default.analysed and default.distribution is None
    assert january.distribution is not None
    assert january.distribution.share_at_or_before(datetime(2026, 2, 1, tzinfo=UTC)) == 1
    # runs itself is partitioned (migration 0006): its leaves are its partitions.
    assert sorted(leaf.name for leaf in runs) == sorted(partitions) and len(partitions) > 1


def test_estimates_over_partitions(probes: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "ESTIMATE_FROM_ROWS", 1000)
    with probes.begin() as conn:
        conn.execute(
            text(
                "DROP TABLE IF EXISTS estimate_probe;"
                "CREATE TABLE estimate_probe (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
                "CREATE TABLE estimate_probe_old PARTITION OF estimate_probe"
                " FOR VALUES FROM ('2000-01-01') TO ('2026-05-01');"
                "CREATE TABLE estimate_probe_new PARTITION OF estimate_probe"
                " FOR VALUES FROM ('2026-05-01') TO ('2026-07-01');"
                "CREATE TABLE estimate_probe_ahead PARTITION OF estimate_probe"
                " FOR VALUES FROM ('2026-07-01') TO ('2026-08-01');"
                "CREATE TABLE estimate_probe_default PARTITION OF estimate_probe DEFAULT;"
                # 4,000 rows a year old, 6,000 in the last ten days before 1 June.
                "INSERT INTO estimate_probe"
                " SELECT '2025-06-01'::timestamptz - n * interval '1 second'"
                " FROM generate_series(1, 4000) AS n;"
                "INSERT INTO estimate_probe"
                " SELECT '2026-06-01'::timestamptz - n * interval '144 second'"
                " FROM generate_series(1, 6000) AS n;"
                "ANALYZE estimate_probe_old, estimate_probe_new;"
            )
        )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with Session(probes) as session:
        estimate = stats_module._estimate(session, now, leaves(session, "estimate_probe", "at"))
        assert estimate is not None  # the partitions never analysed are empty
        rows, histogram = estimate
        assert rows == pytest.approx(10000, rel=0.01)
        assert histogram["<1d"] + histogram["1-7d"] + histogram["7-30d"] == pytest.approx(
            6000, rel=0.02
        )
        assert histogram[">365d"] == pytest.approx(4000, rel=0.02)
        assert histogram["30-90d"] == histogram["90-365d"] == 0
        session.execute(text("INSERT INTO estimate_probe VALUES ('1999-01-01')"))  # default
        # A partition holding rows but never analysed: nothing to estimate it from.
        assert stats_module._estimate(session, now, leaves(session, "estimate_probe", "at")) is None


def test_sqlite_page_cache_is_restored(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's page cache")
    populated(engine, runs=200, days=100)
    # One connection throughout, so what stats set on it is what is read back.
    single = make_engine(engine.url.render_as_string(hide_password=False), poolclass=StaticPool)
    try:
        with single.connect() as conn:
            conn.exec_driver_sql("PRAGMA cache_size = -2000")
        collect_stats(single, PRESETS["default"])
        with single.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -2000
    finally:
        single.dispose()


def test_api_and_cli_say_which_figures_are_estimates(
    settings: Settings, engine: Engine, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    populated(engine, runs=1500, days=200)
    estimating = engine.dialect.name == "postgresql"
    if estimating:
        monkeypatch.setattr(stats_module, "ESTIMATE_FROM_ROWS", 1000)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    headers = {"X-Admin-Key": ADMIN_KEY}
    for exact in (False, True):
        body = client.get("/api/v1/admin/stats", params={"exact": exact}, headers=headers).json()
        runs = next(t for t in body["tables"] if t["table"] == "runs")
        assert runs["histogram_exact"] is runs["rows_exact"] is (exact or not estimating)
        tasks = next(t for t in body["tables"] if t["table"] == "tasks")
        assert tasks["histogram_exact"] is True  # too small to estimate
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    table = CliRunner().invoke(cli, ["stats"], env=env, terminal_width=240)
    assert table.exit_code == 0, table.output
    runs_line = next(line for line in table.stdout.splitlines() if " runs " in line)
    assert runs_line.count("~") == (1 + len(BUCKETS) if estimating else 0)  # rows, buckets
