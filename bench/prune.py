"""SPEC section 10, prune: deleting the older half of the runs, against one raw DELETE and
against the dump baseline.

Runs are seeded over 180 days and a one-rule policy deletes those older than 90 days, so half of
the table goes. ``--cutoff-at mid`` (the default) puts that cutoff in the middle of a month (the
15th, 12:00 UTC); ``--cutoff-at boundary`` puts it exactly on a month's start (the 1st, 00:00
UTC), where a table partitioned by month on ``started_at`` splits into whole partitions on
each side. Every measurement starts from its own copy of the seeded database and deletes the
same rows (one fixed moment is used throughout):

- raw: one ``DELETE FROM runs WHERE started_at < :cutoff`` (the baseline);
- dump: the database's own tool dumping the same rows as JSON into ``gzip -6`` (SQLite
  ``sqlite3 -json``, PostgreSQL ``psql -c "\\copy (SELECT row_to_json(r) …) TO STDOUT"``); the
  *dump baseline* is its time plus the raw DELETE's, the physical limit of archiving before
  deleting;
- taskledger, without archive and with the gzip archive in a temporary directory (at the default
  level 6, and at level 1 for comparison: ``TASKLEDGER_ARCHIVE_GZIP_LEVEL``), through
  ``preview_policy`` + ``execute_policy`` (what ``taskledger retention run --yes --force`` calls;
  half the table is over ``max_table_fraction``, so the run is forced with a reason);
- the seed-001 loop: load every matching ``Run``, ``session.delete`` each, commit every 1000.
  It is measured on a smaller table (a twentieth of ``--rows``) and compared by time per deleted
  row, with taskledger and with the raw DELETE on that same table: the raw DELETE's own lead over
  the loop is the most any batched delete could reach.

Peak Python memory of the engine is taken (tracemalloc) while it archives and deletes 2.5 % of
the rows, then 10 %: four times as many. On PostgreSQL with ``runs`` partitioned, those two may
take different paths (the larger one may cover a partition whole), so it is taken again for
prunes that take whole partitions only: the first partition holding runs, then the first four.
On SQLite a writer process inserts a run every 10 ms into the same file during each timed
prune: its worst insert latency and the longest write transaction of the prune are reported
too.

Time per row from 1M to 4M runs (SPEC: flat): run the script twice, ``--rows 1000000`` and
``--rows 4000000``, and divide the µs/row of the same line.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, event, func, insert, select

from benchlib import (
    Target,
    arguments,
    backends,
    cloned_database,
    console,
    database_path,
    fresh_database,
    mib,
    ms,
    peak_python_memory,
    print_table,
    seed_runs,
)
from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.policy.rules import Policy
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store import make_engine, make_session_factory
from taskledger.store.engine import for_writing
from taskledger.store.models import Run
from taskledger.store.partitions import is_partitioned, list_partitions
from taskledger.store.types import utcnow

SPAN_DAYS = 180
CUTOFF_DAYS = 90
ORM_COMMIT_EVERY = 1000
WRITER_INTERVAL = 0.010

NO_ARCHIVE = Target(1.5)
#: PostgreSQL without archive, the cutoff mid-partition (on a boundary, SPEC asks ≤ 0.5).
NO_ARCHIVE_PG = {"mid": Target(2), "boundary": Target(0.5)}
ARCHIVE = Target(1.5)  # against the dump baseline
VS_ORM = Target(10, at_most=False)
MEMORY = Target(1.25)
LONGEST_TRANSACTION = Target(0.250)
WORST_INSERT = Target(0.500)


def prune_policy(older_than_days: float, *, archive: bool, max_rows: int) -> Policy:
    """One rule: delete the runs older than ``older_than_days`` (to the hour)."""
    return parse_policy(
        f"""
        name = "bench-prune"
        max_rows_per_run = {max_rows}

        [[rule]]
        name = "old-runs"
        table = "runs"
        older_than = "{round(older_than_days * 24)}h"
        action = "delete"
        archive = {"true" if archive else "false"}
        """,
        default_name="bench-prune",
    )


def engine_prune(
    engine: Engine, policy: Policy, now: datetime, *, gzip_level: int = DEFAULT_GZIP_LEVEL
) -> int:
    """Preview and execute ``policy`` as ``taskledger retention run --yes --force`` does."""
    sessions = make_session_factory(engine)
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-archive-") as archive:
        request = RetentionRequest(
            actor="bench",
            trigger=RetentionTrigger.CLI,
            reason="benchmark: half of the table is past the cutoff",
            policy=policy,
            archive=ArchiveTarget(archive, gzip_level=gzip_level),
            safeguards=Safeguards(force=True),
        )
        previewed = preview_policy(sessions, request, now=now)
        report = execute_policy(engine, sessions, request.confirming(previewed))
    assert report.outcome == "ok", report.outcome
    batches = sum(rule.batches for rule in report.rules)
    console.print(
        f"    {report.affected / max(batches, 1):,.0f} rows a batch on average ({batches:,})",
        style="dim",
    )
    return report.affected


def moment(cutoff_at: str) -> tuple[datetime, datetime]:
    """``(now, cutoff)``: the cutoff on the latest month start (``boundary``) or mid-month
    (``mid``: the 15th, 12:00 UTC) at least :data:`CUTOFF_DAYS` before the current time, and
    ``now`` that many days after it."""
    latest = utcnow() - timedelta(days=CUTOFF_DAYS)
    day, hour = (1, 0) if cutoff_at == "boundary" else (15, 12)
    cutoff = datetime(latest.year, latest.month, day, hour, tzinfo=UTC)
    if cutoff > latest:
        previous = cutoff.replace(day=1) - timedelta(days=1)
        cutoff = cutoff.replace(year=previous.year, month=previous.month)
    return cutoff + timedelta(days=CUTOFF_DAYS), cutoff


def raw_prune(engine: Engine, cutoff: datetime) -> int:
    """The baseline: one DELETE statement in one transaction."""
    runs = Run.__table__
    with for_writing(engine).begin() as conn:
        return int(conn.execute(delete(runs).where(runs.c.started_at < cutoff)).rowcount)


def orm_prune(engine: Engine, cutoff: datetime) -> int:
    """The seed-001 loop: every matching object loaded, deleted one by one."""
    deleted = 0
    with make_session_factory(engine)() as session:
        doomed = session.scalars(select(Run).where(Run.started_at < cutoff)).all()
        for deleted, run in enumerate(doomed, start=1):
            session.delete(run)
            if deleted % ORM_COMMIT_EVERY == 0:
                session.commit()
        session.commit()
    return deleted


def dump_seconds(engine: Engine, cutoff: datetime) -> float:
    """The database's own tool dumping the rows older than ``cutoff`` as JSON into ``gzip -6``:
    ``sqlite3 -json`` or ``psql``'s ``\\copy (SELECT row_to_json(r) …) TO STDOUT``."""
    if engine.dialect.name == "sqlite":
        # As SQLite stores it: naive UTC text.
        literal = (
            cutoff.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
        query = f"SELECT * FROM runs WHERE started_at < '{literal}'"
        dump = f"sqlite3 -json {shlex.quote(database_path(engine))} {shlex.quote(query)}"
    else:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        query = (
            "\\copy (SELECT row_to_json(r) FROM runs r "
            f"WHERE started_at < '{cutoff.isoformat()}') TO STDOUT"
        )
        dump = f"psql -X -q {shlex.quote(url)} -c {shlex.quote(query)}"
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f"set -o pipefail; {dump} | gzip -6 > /dev/null"], check=True)
    return time.perf_counter() - started


# --- SQLite: write transactions and a concurrent writer -------------------------------------------


class TransactionClock:
    """The durations of ``engine``'s write transactions, from the lock taken to the commit done.

    A transaction counts as a write when it began ``IMMEDIATE`` or ran an INSERT, UPDATE or
    DELETE. The clock starts after ``BEGIN`` returned (waiting for the lock is not holding it)
    and stops when the DBAPI commit or rollback returned.
    """

    def __init__(self, engine: Engine) -> None:
        self.durations: list[float] = []
        self._open: dict[int, tuple[float, bool]] = {}
        dialect = engine.dialect
        # Appended after taskledger's own "begin" listener, which emits BEGIN [IMMEDIATE].
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)
        for name in ("do_commit", "do_rollback"):
            setattr(dialect, name, self._ending(getattr(dialect, name)))

    def _begin(self, conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
        self._open[id(conn.connection)] = (time.perf_counter(), immediate)

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        key = id(conn.connection)
        if key in self._open and statement.lstrip()[:6].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self._open[key] = (self._open[key][0], True)

    def _ending(self, end: Callable[[Any], None]) -> Callable[[Any], None]:
        def timed(connection: Any) -> None:  # the pool's proxy of the DBAPI connection
            end(connection)
            started, writes = self._open.pop(id(connection), (None, False))
            if started is not None and writes:
                self.durations.append(time.perf_counter() - started)

        return timed

    @property
    def longest(self) -> float:
        return max(self.durations, default=0.0)


def _insert_runs(path: str, project_id: str, ready: Any, stop: Any, results: Any) -> None:
    """A writer process: one run inserted and committed every ~10 ms until ``stop``."""
    engine = for_writing(make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=600_000))
    runs = Run.__table__
    latencies = []
    with engine.connect() as conn:
        while not stop.is_set():
            started = time.perf_counter()
            with conn.begin():
                conn.execute(
                    insert(runs).values(
                        project_id=uuid.UUID(project_id),
                        task="bench-writer",
                        run_id=uuid.uuid4().hex[:12],
                        status="running",
                        started_at=utcnow(),
                    )
                )
            latencies.append(time.perf_counter() - started)
            ready.set()
            time.sleep(WRITER_INTERVAL)
    engine.dispose()
    results.put(latencies)


@dataclass
class Writer:
    latencies: list[float]

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


@contextmanager
def concurrent_writer(engine: Engine, project_id: uuid.UUID) -> Iterator[Writer]:
    """A process inserting into ``engine``'s SQLite file while the block runs."""
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    process = context.Process(
        target=_insert_runs,
        args=(database_path(engine), str(project_id), ready, stop, results),
    )
    process.start()
    if not ready.wait(60):
        process.kill()
        raise RuntimeError("the writer process did not start")
    writer = Writer([])
    try:
        yield writer
    finally:
        stop.set()
        writer.latencies = results.get(timeout=600)
        process.join()


# --- the measurements ----------------------------------------------------------------------------


@dataclass
class Measurement:
    label: str
    seconds: float
    rows: int
    longest_transaction: float | None = None
    worst_insert: float | None = None

    @property
    def per_row(self) -> float:
        return self.seconds / max(self.rows, 1)


def measure(
    label: str,
    seeded: Engine,
    project_id: uuid.UUID,
    prune: Callable[[Engine], int],
    *,
    writer: bool = True,
) -> Measurement:
    """``prune`` on a fresh copy of ``seeded``; on SQLite with a concurrent writer unless not
    ``writer``."""
    with cloned_database(seeded) as engine:
        if engine.dialect.name != "sqlite" or not writer:
            started = time.perf_counter()
            rows = prune(engine)
            seconds = time.perf_counter() - started
            console.print(f"  {label}: {rows:,} rows in {ms(seconds)}", style="dim")
            return Measurement(label, seconds, rows)
        clock = TransactionClock(engine)
        with concurrent_writer(engine, project_id) as inserts:
            started = time.perf_counter()
            rows = prune(engine)
            seconds = time.perf_counter() - started
    result = Measurement(label, seconds, rows, clock.longest, inserts.worst)
    console.print(f"  {label}: {rows:,} rows in {ms(seconds)}", style="dim")
    return result


def memory_at(seeded: Engine, now: datetime, rows: int, fraction: float) -> tuple[int, int]:
    """Rows deleted and peak Python memory of an archived prune taking ``fraction`` of the runs."""
    return memory_of(seeded, now, rows, SPAN_DAYS * (1 - fraction))


def whole_partition_memory(
    seeded: Engine, now: datetime, rows: int
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """PostgreSQL with ``runs`` partitioned: rows deleted and peak memory of archived prunes
    whose cutoffs are the ends of the first and of the fourth partition holding runs (every
    row on the whole-partition path, about four times as many), or ``None``."""
    with seeded.connect() as conn:
        if not is_partitioned(conn):
            return None
        oldest = conn.scalar(select(func.min(Run.started_at)))
        filled = [
            p.upper
            for p in list_partitions(conn)
            if p.upper is not None and oldest is not None and oldest < p.upper <= now
        ]
    if len(filled) < 4:
        return None
    one, four = ((now - filled[i]).total_seconds() / 86400 for i in (0, 3))
    return memory_of(seeded, now, rows, one), memory_of(seeded, now, rows, four)


def memory_of(seeded: Engine, now: datetime, rows: int, older_than_days: float) -> tuple[int, int]:
    """Rows deleted and peak Python memory of an archived prune of the runs older than
    ``older_than_days`` before ``now``."""
    policy = prune_policy(older_than_days, archive=True, max_rows=rows)
    with cloned_database(seeded) as engine:
        deleted = 0

        def run() -> None:
            nonlocal deleted
            deleted = engine_prune(engine, policy, now)

        peak = peak_python_memory(run)
    return deleted, peak


def bench_backend(backend: str, rows: int, orm_rows: int, cutoff_at: str) -> None:
    now, cutoff = moment(cutoff_at)
    console.print(
        f"[bold]{backend}[/]: {rows:,} runs over {SPAN_DAYS} days, cutoff {CUTOFF_DAYS} d "
        f"({cutoff:%Y-%m-%d %H:%M} UTC, {cutoff_at})"
    )
    with fresh_database(backend) as seeded:
        project_id = seed_runs(seeded, rows, days=SPAN_DAYS, now=now)
        raw = measure("raw DELETE", seeded, project_id, lambda e: raw_prune(e, cutoff))
        dump = dump_seconds(seeded, cutoff)
        console.print(f"  dump | gzip -6: {ms(dump)}", style="dim")
        baseline = Measurement("dump baseline (dump + raw DELETE)", dump + raw.seconds, raw.rows)
        bare = measure(
            "taskledger",
            seeded,
            project_id,
            lambda e: engine_prune(e, prune_policy(CUTOFF_DAYS, archive=False, max_rows=rows), now),
        )
        archived = measure(
            "taskledger + gzip",
            seeded,
            project_id,
            lambda e: engine_prune(e, prune_policy(CUTOFF_DAYS, archive=True, max_rows=rows), now),
        )
        fast = measure(
            "taskledger + gzip -1",
            seeded,
            project_id,
            lambda e: engine_prune(
                e, prune_policy(CUTOFF_DAYS, archive=True, max_rows=rows), now, gzip_level=1
            ),
        )
        small, large = memory_at(seeded, now, rows, 0.025), memory_at(seeded, now, rows, 0.1)
        whole = whole_partition_memory(seeded, now, rows) if backend == "postgresql" else None
    with fresh_database(backend) as seeded_small:
        small_project = seed_runs(seeded_small, orm_rows, days=SPAN_DAYS)
        small_now = utcnow()
        small_cutoff = small_now - timedelta(days=CUTOFF_DAYS)

        def on_small(label: str, prune: Callable[[Engine], int]) -> Measurement:
            # No concurrent writer: the ORM loop's long read transaction cannot become a write
            # once another connection has committed.
            return measure(
                f"{label}, {orm_rows // 1000}k", seeded_small, small_project, prune, writer=False
            )

        orm = on_small("ORM loop", lambda e: orm_prune(e, small_cutoff))
        small_policy = prune_policy(CUTOFF_DAYS, archive=False, max_rows=orm_rows)
        orm_engine = on_small("taskledger", lambda e: engine_prune(e, small_policy, small_now))
        orm_raw = on_small("raw DELETE", lambda e: raw_prune(e, small_cutoff))
    counts = (raw.rows, bare.rows, archived.rows, fast.rows)
    assert len(set(counts)) == 1, counts

    sqlite = backend == "sqlite"
    headers = ["prune", "deleted", "time", "µs/row", "/ raw", "/ dump baseline"]
    if sqlite:
        headers += ["longest tx", "worst insert"]
    table = []
    for m in (raw, baseline, bare, archived, fast, orm, orm_engine, orm_raw):
        row: list[Any] = [
            m.label,
            f"{m.rows:,}",
            ms(m.seconds),
            f"{m.per_row * 1e6:,.1f}",
            f"{m.seconds / raw.seconds:.2f}" if m.rows == raw.rows else "",
            f"{m.seconds / baseline.seconds:.2f}" if m.rows == raw.rows else "",
        ]
        if sqlite:
            row += [ms(m.longest_transaction or 0), ms(m.worst_insert or 0)]
        table.append(row)
    print_table(f"Prune on {backend}", headers, table)

    memory = large[1] / small[1]
    verdicts: list[list[Any]] = [
        [f"no archive / raw (cutoff {cutoff_at})", f"{bare.seconds / raw.seconds:.2f}"],
        ["gzip archive / dump baseline", f"{archived.seconds / baseline.seconds:.2f}"],
        ["gzip -1 archive / dump baseline", f"{fast.seconds / baseline.seconds:.2f}"],
        [
            f"ORM loop ({orm_rows:,}) / taskledger ({rows:,}), per row",
            f"{orm.per_row / bare.per_row:.1f}",
        ],
        [
            f"ORM loop / taskledger, per row, both {orm_rows:,}",
            f"{orm.per_row / orm_engine.per_row:.1f}",
        ],
        [
            f"ORM loop / raw DELETE, per row, both {orm_rows:,} (the most any batching can gain)",
            f"{orm.per_row / orm_raw.per_row:.1f}",
        ],
        [
            f"peak memory {mib(large[1])} ({large[0]:,} rows) / {mib(small[1])} ({small[0]:,})",
            f"{memory:.2f}",
        ],
    ]
    no_archive = NO_ARCHIVE if sqlite else NO_ARCHIVE_PG[cutoff_at]
    targets = [no_archive, ARCHIVE, ARCHIVE, VS_ORM, VS_ORM, VS_ORM, MEMORY]
    values = [
        bare.seconds / raw.seconds,
        archived.seconds / baseline.seconds,
        fast.seconds / baseline.seconds,
        orm.per_row / bare.per_row,
        orm.per_row / orm_engine.per_row,
        orm.per_row / orm_raw.per_row,
        memory,
    ]
    if whole is not None:
        (one_rows, one_peak), (four_rows, four_peak) = whole
        verdicts.append(
            [
                f"peak memory, whole partitions only: {mib(four_peak)} ({four_rows:,} rows, "
                f"4 partitions) / {mib(one_peak)} ({one_rows:,}, 1)",
                f"{four_peak / one_peak:.2f}",
            ]
        )
        targets.append(MEMORY)
        values.append(four_peak / one_peak)
    for m in (bare, archived, fast) if sqlite else ():
        verdicts.append([f"longest write transaction, {m.label}", ms(m.longest_transaction or 0)])
        verdicts.append([f"worst concurrent insert, {m.label}", ms(m.worst_insert or 0)])
        targets += [LONGEST_TRANSACTION, WORST_INSERT]
        values += [m.longest_transaction or 0, m.worst_insert or 0]
    if sqlite:
        verdicts.append(
            ["raw DELETE holds the write lock, blocking the writer", ms(raw.worst_insert or 0)]
        )
        targets.append(WORST_INSERT)
        values.append(raw.worst_insert or 0)
    for row, target, value in zip(verdicts, targets, values, strict=True):
        row.append(target.verdict(value))
    print_table(f"Prune targets on {backend}", ["target", "value", "verdict"], verdicts)


def main() -> None:
    def cutoff_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cutoff-at",
            choices=["mid", "boundary"],
            default="mid",
            help="the cutoff mid-month (default) or exactly on a UTC month start",
        )

    args = arguments(__doc__.splitlines()[0], rows=1_000_000, more=cutoff_option)
    for backend in backends(args.backend):
        bench_backend(backend, args.rows, max(1000, args.rows // 20), args.cutoff_at)


if __name__ == "__main__":
    main()
