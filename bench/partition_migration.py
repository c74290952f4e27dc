"""PostgreSQL: how long migration 0006 takes to partition an existing ``runs`` table.

A database at revision 0005 (one plain ``runs`` table) is seeded with ``--rows`` runs over 180
days, then upgraded to head: the runs are copied into the partitioned table (a partition per
month holding rows), its indexes are built and the idempotency keys collected. The time is
reported per million rows, against the time of copying the same table once with ``CREATE TABLE
… AS SELECT`` (the least any conversion can cost) plus building the same indexes on the copy.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from benchlib import arguments, backends, console, fresh_database, print_table, seed_runs, times
from taskledger.store import migrate
from taskledger.store.partitions import list_partitions

INDEXES = [
    "(agent_id)",
    "(task_id)",
    "(run_id)",
    "(started_at)",
    "(started_at DESC, id DESC)",
    "(project_id, started_at DESC, id DESC)",
    "(status, started_at)",
    "(project_id, idempotency_key)",
]


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=1_000_000)
    if "postgresql" not in backends(args.backend):
        console.print("PostgreSQL only: set TASKLEDGER_TEST_DATABASE_URL")
        return
    with fresh_database("postgresql", revision="0005") as engine:
        seed_runs(engine, args.rows)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE runs_copy AS SELECT * FROM runs"))
            for number, columns in enumerate(INDEXES):
                conn.execute(text(f"CREATE INDEX runs_copy_{number} ON runs_copy {columns}"))
            conn.execute(text("DROP TABLE runs_copy"))
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        migrate.upgrade(engine)
        migration = time.perf_counter() - started
        with engine.connect() as conn:
            partitions = len(list_partitions(conn))
            moved = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
        assert moved == args.rows, moved
    per_million = 1_000_000 / args.rows
    print_table(
        f"migration 0006 on {args.rows:,} runs ({partitions} partitions)",
        ["", "seconds", "per million rows", "÷ copy + indexes"],
        [
            [
                "copy + indexes (baseline)",
                f"{baseline:.1f}",
                f"{baseline * per_million:.1f} s",
                times(1.0),
            ],
            [
                "migration 0006",
                f"{migration:.1f}",
                f"{migration * per_million:.1f} s",
                times(migration / baseline),
            ],
        ],
    )


if __name__ == "__main__":
    main()
