"""Python client (SPEC section 10): buffered recording at least 0.8x the rate of ``runs:batch``
posted directly with httpx, on the same server in the same run; and one ``with ledger.run()``
round against the raw POST and PATCH it makes.

The server is a real ``taskledger serve`` on 127.0.0.1. The direct side builds each batch of
1000 runs as dicts and posts it with ``httpx.Client.post(json=...)``, one after the other. The
buffered side calls ``ledger.record(...)`` for each run (validated, keyed, queued; a background
thread sends batches of 1000) and ends with ``flush()``. Rounds alternate which side goes first
and the best rate of each is kept. The ``with ledger.run()`` round is compared with the same two
requests made with httpx (the POST carrying an idempotency key, then the PATCH), median of
interleaved repeats.

On PostgreSQL each side is preceded by ``ANALYZE runs``, which autovacuum does on a server left
to itself: without statistics the planner takes a table loaded since its last analysis to hold a
few rows per project and looks up a batch's idempotency keys by reading every run of the project
instead of probing the unique index, so keyed batches (the buffered side's) would slow down as
the table grows while unkeyed ones (the direct side's) would not (docs/benchmarks.md).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, text

from benchlib import (
    Target,
    arguments,
    backends,
    console,
    fresh_database,
    interleaved_medians,
    ms,
    new_api_key,
    new_project,
    print_table,
    serve,
    times,
)
from taskledger.client import Ledger
from taskledger.enums import Scope

TARGET = Target(0.8, at_most=False)
BATCH = 1000
ROUNDS = 3
ROUND_TRIPS = 30


def run_fields(tag: str, n: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "task": "embed",
        "run_id": f"{tag}-{n:08d}",
        "status": "completed",
        "started_at": now,
        "finished_at": now,
        "duration_ms": 1200,
        "inputs": {"items": n % 500, "source": f"batch-{n % 50}"},
        "log_excerpt": f"processed {n % 500} items",
    }


def direct(base_url: str, key: str, rows: int, tag: str) -> float:
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        client.get("/healthz")
        started = time.perf_counter()
        for start in range(0, rows, BATCH):
            runs = [run_fields(tag, n) for n in range(start, min(rows, start + BATCH))]
            response = client.post("/api/v1/runs:batch", json={"runs": runs})
            if response.status_code != 201:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        return rows / (time.perf_counter() - started)


def buffered(base_url: str, key: str, rows: int, tag: str) -> float:
    with Ledger(base_url, key, buffer=True, flush_at=BATCH, flush_interval=5.0) as ledger:
        ledger.me()  # connect before timing
        started = time.perf_counter()
        for n in range(rows):
            ledger.record(run_fields(tag, n))
        if not ledger.flush(timeout=600):
            raise RuntimeError(f"not delivered: {ledger.buffer_stats()}")
        elapsed = time.perf_counter() - started
        stats = ledger.buffer_stats()
        if stats.sent != rows:
            raise RuntimeError(f"sent {stats.sent} of {rows}")
    return rows / elapsed


def rounds(base_url: str, key: str) -> list[float]:
    ledger = Ledger(base_url, key)
    raw = httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=60)

    def with_run() -> None:
        with ledger.run("round", inputs={"n": 1}) as run:
            run.log("done")

    def raw_round() -> None:
        now = datetime.now(UTC).isoformat()
        body = {"task": "round", "status": "running", "started_at": now, "inputs": {"n": 1}}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        created = raw.post("/api/v1/runs", json=body, headers=headers).json()
        change = {"status": "completed", "finished_at": now, "log_excerpt": "done"}
        raw.patch(f"/api/v1/runs/{created['id']}", json=change).raise_for_status()

    try:
        with_run(), raw_round()  # warm both
        return interleaved_medians([with_run, raw_round], repeat=ROUND_TRIPS)
    finally:
        ledger.close()
        raw.close()


def analyze(engine: Engine) -> None:
    """Fresh planner statistics for ``runs`` on PostgreSQL, as autovacuum keeps them."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE runs"))


def measure(engine: Engine, rows: int) -> tuple[list[list[Any]], list[list[Any]]]:
    project_id = new_project(engine)
    key = new_api_key(engine, project_id, Scope.READ, Scope.WRITE)
    direct_rates, buffered_rates = [], []
    with serve(engine) as base_url:
        for n in range(ROUNDS):
            order = ("direct", "buffered") if n % 2 == 0 else ("buffered", "direct")
            for kind in order:
                analyze(engine)
                if kind == "direct":
                    direct_rates.append(direct(base_url, key, rows, f"d{n}"))
                else:
                    buffered_rates.append(buffered(base_url, key, rows, f"b{n}"))
            console.print(
                f"  round {n + 1}: direct {direct_rates[-1]:,.0f} runs/s, "
                f"buffered {buffered_rates[-1]:,.0f} runs/s",
                style="dim",
            )
        with_run, raw_round = rounds(base_url, key)
    best_direct, best_buffered = max(direct_rates), max(buffered_rates)
    ratio = best_buffered / best_direct
    rates = [
        ["runs:batch posted with httpx", f"{best_direct:,.0f}", times(1.0), ""],
        [
            "Ledger(buffer=True).record",
            f"{best_buffered:,.0f}",
            times(ratio),
            TARGET.verdict(ratio),
        ],
    ]
    trips = [
        ["raw POST + PATCH (httpx)", ms(raw_round), times(1.0)],
        ["with ledger.run()", ms(with_run), times(with_run / raw_round)],
    ]
    return rates, trips


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=50_000)
    for backend in backends(args.backend):
        console.print(f"[bold]{backend}[/]: {args.rows:,} runs per round, batches of {BATCH}")
        with fresh_database(backend) as engine:
            rates, trips = measure(engine, args.rows)
        print_table(
            f"Client recording on {backend}, {args.rows:,} runs (best of {ROUNDS} rounds)",
            ["path", "runs/s", "÷ direct", "target"],
            rates,
        )
        print_table(
            f"One run round on {backend} (median of {ROUND_TRIPS})",
            ["path", "time", "÷ raw"],
            trips,
        )


if __name__ == "__main__":
    main()
