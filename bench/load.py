"""Load during a prune (SPEC section 11, issue figures): reader and writer latency on a real
server before a retention run and while it archives and deletes most of the runs.

Runs are seeded over 100 days. A real ``taskledger serve`` answers readers and writers (8 each by
default, one async httpx client each, in this process). Readers cycle through a filtered list,
three pages followed by cursor, and a filtered CSV export read to its end, all within the last
20 days: runs the prune leaves, so that their work is the same before and during it. Writers
post single runs, and every fifth time a batch of 20. After a warm-up the load runs alone for
``--before`` seconds, then ``taskledger retention run --policy ... --yes`` starts in its own
process and deletes the runs older than 25 days (about three quarters of them), archived. The
load stops when the prune ends.

*Before* counts the requests sent in the ``--before`` seconds; *during*, the requests sent
between the prune's audit row opening and closing (its lock, checks, batches and archive).
Latency is measured by the client, from sending a request to having its whole response (for the
CSV export, its last byte), so it includes the client's own wait for its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from benchlib import (
    backends,
    console,
    engine_url,
    fresh_database,
    ms,
    new_api_key,
    print_table,
    seed_runs,
    serve,
)
from taskledger.enums import Scope
from taskledger.store import make_session_factory
from taskledger.store.models import RetentionRun
from taskledger.store.types import as_utc

SPAN_DAYS = 100
WARM_UP = 3.0
BATCH_EVERY = 5
BATCH_SIZE = 20
POLICY = """
name = "bench-load-prune"
max_table_fraction = 0.9
[[rule]]
name = "old-runs"
table = "runs"
older_than = "25d"
action = "delete"
"""
#: The readers read only runs the prune leaves (the last RECENT_DAYS), so that their work is the
#: same before and during it: what changes is the prune running beside them.
RECENT_DAYS = 20
FILTERED_LIST = {"status": "failed", "task": "ingest", "limit": 50}
FILTERED_EXPORT = {"status": "failed", "task": "summarize"}


@dataclass
class Timings:
    """Every request: its role, when it was sent and when its response was complete (wall
    clock, to compare with the audit row), and whatever failed."""

    sent: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"reader": [], "writer": []}
    )
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def time(
        self, role: str, send: Callable[[], Awaitable[httpx.Response]], ok: int
    ) -> httpx.Response | None:
        started = time.time()
        try:
            response = await send()
        except httpx.HTTPError as exc:
            self.failures.append(f"{role}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code != ok:
            self.failures.append(f"{role}: {response.status_code} {response.text[:120]}")
            return None
        self.sent[role].append((started, time.time()))
        return response


async def writer(client: httpx.AsyncClient, n: int, timings: Timings) -> None:
    i = 0
    while not timings.stop.is_set():
        if i % BATCH_EVERY == BATCH_EVERY - 1:
            runs = [{"task": "load", "run_id": f"w{n}-{i}-{k}"} for k in range(BATCH_SIZE)]
            await timings.time(
                "writer",
                lambda runs=runs: client.post("/api/v1/runs:batch", json={"runs": runs}),
                201,
            )
        else:
            body = {"task": "load", "run_id": f"w{n}-{i}", "status": "running"}
            await timings.time(
                "writer", lambda body=body: client.post("/api/v1/runs", json=body), 201
            )
        i += 1


async def _csv(client: httpx.AsyncClient, since: str) -> httpx.Response:
    params = {**FILTERED_EXPORT, "since": since}
    async with client.stream("GET", "/api/v1/runs.csv", params=params) as response:
        await response.aread()
    return response


async def reader(client: httpx.AsyncClient, n: int, timings: Timings) -> None:
    since = (datetime.now(UTC) - timedelta(days=RECENT_DAYS)).isoformat()
    listed = {**FILTERED_LIST, "since": since}
    i = 0
    while not timings.stop.is_set():
        kind = (n + i) % 3
        if kind == 0:
            await timings.time("reader", lambda: client.get("/api/v1/runs", params=listed), 200)
        elif kind == 1:
            cursor: str | None = None
            for _ in range(3):
                page: dict[str, Any] = {"limit": 100, "since": since}
                if cursor:
                    page["cursor"] = cursor
                response = await timings.time(
                    "reader", lambda page=page: client.get("/api/v1/runs", params=page), 200
                )
                if response is None or not (cursor := response.json()["next_cursor"]):
                    break
        else:
            await timings.time("reader", lambda: _csv(client, since), 200)
        i += 1


@dataclass
class Prune:
    """The prune's process and, once it ended, its audit row's window and report."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    started_at: float = 0.0
    finished_at: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def start_prune(engine: Engine, tmp: Path) -> Prune:
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    env = {
        **os.environ,
        "TASKLEDGER_DATABASE_URL": engine_url(engine),
        "TASKLEDGER_DATA_DIR": str(tmp / "data"),
        "TASKLEDGER_ARCHIVE_URL": str(tmp / "archives"),
        "TASKLEDGER_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "taskledger", "retention", "run"]
    command += ["--policy", str(policy), "--yes", "--json"]
    out, err = tmp / "prune.out", tmp / "prune.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
    return Prune(process, out, err)


async def load_around_prune(
    base_url: str, key: str, readers: int, writers: int, before: float, begin: Callable[[], Prune]
) -> tuple[Timings, float, Prune]:
    """Load from a warm-up through ``before`` seconds alone, then until the prune ends."""
    timings = Timings()
    limits = httpx.Limits(max_connections=readers + writers, keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-API-Key": key}, timeout=600, limits=limits
    ) as client:
        tasks = [asyncio.create_task(reader(client, n, timings)) for n in range(readers)]
        tasks += [asyncio.create_task(writer(client, n, timings)) for n in range(writers)]
        try:
            await asyncio.sleep(WARM_UP)  # pacing: the measurement starts after the warm-up
            measured_from = time.time()
            await asyncio.sleep(before)
            prune = begin()
            while prune.process.poll() is None:
                await asyncio.sleep(0.1)
        finally:
            timings.stop.set()
            await asyncio.gather(*tasks)
    return timings, measured_from, prune


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(latencies: list[float], seconds: float) -> list[str]:
    if not latencies:
        return ["0", "", "", "", ""]
    return [
        f"{len(latencies):,}",
        f"{len(latencies) / seconds:,.1f}",
        ms(statistics.median(latencies)),
        ms(percentile(latencies, 0.99)),
        ms(max(latencies)),
    ]


def measure(backend: str, rows: int, readers: int, writers: int, before: float) -> None:
    console.print(f"[bold]{backend}[/]: {rows:,} runs, {readers} readers, {writers} writers")
    with fresh_database(backend) as engine, tempfile.TemporaryDirectory() as tmp:
        project_id = seed_runs(engine, rows, days=SPAN_DAYS)
        key = new_api_key(engine, project_id, Scope.READ, Scope.WRITE)
        with serve(engine) as url:
            timings, measured_from, prune = asyncio.run(
                load_around_prune(
                    url, key, readers, writers, before, lambda: start_prune(engine, Path(tmp))
                )
            )
        if prune.process.returncode != 0:
            raise RuntimeError(f"the prune failed: {prune.err.read_text()[-2000:]}")
        prune.report = json.loads(prune.out.read_text())
        with make_session_factory(engine, read_only=True)() as session:
            audit = session.get(RetentionRun, prune.report["retention_run_id"])
            assert audit is not None and audit.finished_at is not None
            prune.started_at = as_utc(audit.started_at).timestamp()
            prune.finished_at = as_utc(audit.finished_at).timestamp()
    deleted = sum(rule["affected"] for rule in prune.report["rules"])
    took = prune.finished_at - prune.started_at
    console.print(
        f"  prune: {deleted:,} runs archived and deleted in {took:.1f} s "
        f"({deleted / took:,.0f} rows/s), outcome {prune.report['outcome']}; "
        f"{len(timings.failures)} failed requests",
        style="dim",
    )
    for failure in timings.failures[:5]:
        console.print(f"  [red]{failure}[/]")
    table = []
    for role in ("reader", "writer"):
        sent = timings.sent[role]
        alone = [
            end - start for start, end in sent if measured_from <= start and end < prune.started_at
        ]
        during = [
            end - start for start, end in sent if prune.started_at <= start < prune.finished_at
        ]
        table.append([role, "before", *summarize(alone, prune.started_at - measured_from)])
        table.append([role, "during the prune", *summarize(during, took)])
    print_table(
        f"Load during a prune — {backend}, {rows:,} runs, {deleted:,} deleted",
        ["role", "phase", "requests", "per s", "p50", "p99", "max"],
        table,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="runs to seed (default 1M)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument(
        "--before", type=float, default=20.0, help="seconds of load before the prune (default 20)"
    )
    args = parser.parse_args()
    for backend in backends(args.backend):
        measure(backend, args.rows, args.readers, args.writers, args.before)


if __name__ == "__main__":
    main()
