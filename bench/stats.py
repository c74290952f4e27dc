"""SPEC section 10, stats: ``taskledger stats`` on 1M runs against one ``SELECT count(*)``.

Runs are seeded over 180 days. ``collect_stats`` with the default policy (what ``taskledger
stats`` and ``GET /api/v1/admin/stats`` run) is timed against ``SELECT count(*) FROM runs``,
each in turn, several times over, medians compared; the title says whether the default counted
or estimated the runs' rows and histogram. ``--exact`` (exact row counts, and on SQLite the sizes
from ``dbstat``) is reported too, without a target. ``--explain`` prints every
statement ``collect_stats`` runs, with its time and query plan.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event, text

from benchlib import (
    Target,
    arguments,
    backends,
    console,
    fresh_database,
    interleaved_medians,
    ms,
    print_table,
    seed_runs,
)
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.stats import collect_stats

STATS = Target(3)
REPEAT = 7


def count_runs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM runs")).scalar_one())


def explain(engine: Engine) -> None:
    """Each statement of one ``collect_stats``, slowest first, with its plan."""
    statements: list[tuple[float, str, Any]] = []
    started: dict[int, float] = {}

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((time.perf_counter() - started.pop(id(cursor)), statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        collect_stats(engine, PRESETS["default"])
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        for seconds, statement, parameters in sorted(statements, key=lambda s: -s[0])[:12]:
            console.print(f"[bold]{ms(seconds)}[/] {' '.join(statement.split())}")
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            plan = conn.exec_driver_sql(prefix + statement, parameters).all()
            for row in plan:
                console.print(f"    {row[-1]}", style="dim")


def bench_backend(backend: str, rows: int, show_plans: bool) -> None:
    with fresh_database(backend) as engine:
        seed_runs(engine, rows, days=180)
        policy = PRESETS["default"]
        # Warms the caches alike for all three, and says how the default reached its figures.
        runs = next(t for t in collect_stats(engine, policy).tables if t.table == "runs")
        how = ", ".join(
            f"{name} {'counted' if exact else 'estimated'}"
            for name, exact in (("rows", runs.rows_exact), ("histogram", runs.histogram_exact))
        )
        count, default, exact = interleaved_medians(
            [
                lambda: count_runs(engine),
                lambda: collect_stats(engine, policy),
                lambda: collect_stats(engine, policy, exact=True),
            ],
            repeat=REPEAT,
        )
        if show_plans:
            explain(engine)
    print_table(
        f"Stats on {backend}, {rows:,} runs (medians of {REPEAT}; default: {how})",
        ["measurement", "time", "/ count(*)", "target"],
        [
            ["SELECT count(*) FROM runs", ms(count), "1.00", ""],
            [
                "collect_stats (default)",
                ms(default),
                f"{default / count:.2f}",
                STATS.verdict(default / count),
            ],
            ["collect_stats --exact", ms(exact), f"{exact / count:.2f}", "(no target)"],
        ],
    )


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        rows=1_000_000,
        flags={"--explain": "print each statement of collect_stats with its time and plan"},
    )
    for backend in backends(args.backend):
        bench_backend(backend, args.rows, args.explain)


if __name__ == "__main__":
    main()
