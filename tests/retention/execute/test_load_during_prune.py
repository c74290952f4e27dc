"""Load during a prune (SPEC section 11): readers and writers on a real server while
``taskledger retention run`` archives and deletes most of 100,000 runs. No request fails, no
acknowledged write is lost, and the archive holds every deleted row exactly once.

The policy can never select a write made during the test: it deletes runs older than 25 days,
and the writers' runs start now. The test checks that the load ran for the whole prune: requests
completed before the prune's audit row opened, while it was open, and after it closed.
``bench/load.py`` measures the latencies of the same kind of load.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from taskledger.retention.archive.reader import ArchiveReader, verify
from taskledger.services.generate import generate
from taskledger.store import make_session_factory
from taskledger.store.models import RetentionRun, Run
from taskledger.store.types import as_utc
from tests.helpers import project_with_key
from tests.serving import DEADLINE, Server, server_env, serving

RUNS = 100_000
SPAN_DAYS = 100
READERS = 8
WRITERS = 8
BATCH_EVERY = 5  # every fifth write of a writer is a batch
BATCH_SIZE = 20
#: Requests of each role that must complete before the prune starts and after it ends.
AROUND = 2 * READERS
#: ... and while its audit row is open.
DURING = READERS

POLICY = """
name = "load-prune"
max_table_fraction = 0.9
[[rule]]
name = "old-runs"
table = "runs"
older_than = "25d"
action = "delete"
"""


@dataclass
class Load:
    """What the clients saw: when each request of each role completed, what failed, and the
    run ids the server acknowledged."""

    done: dict[str, list[datetime]] = field(default_factory=lambda: {"reader": [], "writer": []})
    failures: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def completed(self, role: str, since: datetime | None = None) -> int:
        return sum(1 for at in self.done[role] if since is None or at > since)

    async def request(
        self, role: str, send: Callable[[], Awaitable[httpx.Response]], ok: int
    ) -> httpx.Response | None:
        """Send one request; a transport error or an unexpected status is a failure."""
        try:
            response = await send()
        except httpx.HTTPError as exc:
            return self.failed(role, f"{type(exc).__name__}: {exc}")
        if response.status_code != ok:
            return self.failed(role, f"{response.status_code} {response.text[:200]}")
        self.done[role].append(datetime.now(UTC))
        return response

    def failed(self, role: str, what: str) -> None:
        self.failures.append(f"{datetime.now(UTC).isoformat()} {role}: {what}")


async def _writer(client: httpx.AsyncClient, n: int, load: Load) -> None:
    i = 0
    while not load.stop.is_set():
        if i % BATCH_EVERY == BATCH_EVERY - 1:
            runs = [
                {"task": "load", "run_id": f"w{n}-{i}-{k}", "status": "completed"}
                for k in range(BATCH_SIZE)
            ]
            response = await load.request(
                "writer",
                lambda runs=runs: client.post("/api/v1/runs:batch", json={"runs": runs}),
                201,
            )
            if response is not None:
                load.acknowledged.extend(item["run_id"] for item in response.json()["items"])
        else:
            body = {"task": "load", "run_id": f"w{n}-{i}", "status": "running"}
            response = await load.request(
                "writer", lambda body=body: client.post("/api/v1/runs", json=body), 201
            )
            if response is not None:
                load.acknowledged.append(response.json()["run_id"])
        i += 1


#: The readers' filters: few enough rows that a request stays short on a loaded machine.
FILTERED_LIST = {"status": "failed", "task": "ingest", "limit": 50}
FILTERED_EXPORT = {"status": "failed", "task": "summarize"}


async def _csv(client: httpx.AsyncClient) -> httpx.Response:
    """A whole filtered CSV export; one cut short raises (it ends without its final chunk)."""
    async with client.stream("GET", "/api/v1/runs.csv", params=FILTERED_EXPORT) as response:
        await response.aread()
    return response


async def _reader(client: httpx.AsyncClient, n: int, load: Load) -> None:
    since = (datetime.now(UTC) - timedelta(days=SPAN_DAYS // 2)).isoformat()
    i = 0
    while not load.stop.is_set():
        kind = (n + i) % 3
        if kind == 0:  # a filtered list
            await load.request(
                "reader", lambda: client.get("/api/v1/runs", params=FILTERED_LIST), 200
            )
        elif kind == 1:  # a few pages, cursor after cursor
            cursor: str | None = None
            for _ in range(3):
                page: dict[str, Any] = {"limit": 100, "since": since}
                if cursor:
                    page["cursor"] = cursor
                response = await load.request(
                    "reader", lambda page=page: client.get("/api/v1/runs", params=page), 200
                )
                if response is None or not (cursor := response.json()["next_cursor"]):
                    break
        else:  # a filtered CSV export, read to its end
            response = await load.request("reader", lambda: _csv(client), 200)
            if response is not None:
                lines = response.text.split("\r\n")
                if not lines[0].startswith("id,") or lines[-1] != "":
                    load.failed("reader", f"an incomplete CSV export: {response.text[-200:]!r}")
        i += 1


async def _until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.05)


@dataclass
class Prune:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    ended_at: datetime | None = None


async def _load_around_a_prune(
    server: Server, key: str, start_prune: Callable[[], Prune]
) -> tuple[Load, Prune]:
    """Readers and writers from before the prune starts until after it ends."""
    load = Load()
    # Idle connections are dropped well before the server's keep-alive timeout (5 s), so that no
    # request is sent on a connection the server is closing at that moment.
    limits = httpx.Limits(max_connections=READERS + WRITERS, keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": key}, timeout=4 * DEADLINE, limits=limits
    ) as client:
        clients = [asyncio.create_task(_reader(client, n, load)) for n in range(READERS)]
        clients += [asyncio.create_task(_writer(client, n, load)) for n in range(WRITERS)]
        try:
            await _until(
                lambda: min(load.completed("reader"), load.completed("writer")) >= AROUND,
                "the load to get going",
            )
            prune = start_prune()
            await _until(lambda: prune.process.poll() is not None, "the prune", 6 * DEADLINE)
            prune.ended_at = datetime.now(UTC)
            ended = prune.ended_at
            await _until(
                lambda: (
                    min(load.completed("reader", ended), load.completed("writer", ended)) >= AROUND
                ),
                "the load to go on after the prune",
            )
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    return load, prune


def test_readers_and_writers_during_a_prune_see_no_errors_and_lose_nothing(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    project_id, key = project_with_key(engine)
    generate(engine, project_id, runs=RUNS, days=SPAN_DAYS, seed=12)
    sessions = make_session_factory(engine, read_only=True)
    with sessions() as session:
        before = set(session.scalars(select(Run.id)))
    assert len(before) == RUNS
    policy = tmp_path / "prune.toml"
    policy.write_text(POLICY)
    env = server_env(database_url, tmp_path)

    def start_prune() -> Prune:
        out, err = tmp_path / "prune.out", tmp_path / "prune.err"
        command = [sys.executable, "-m", "taskledger", "retention", "run"]
        command += ["--policy", str(policy), "--yes", "--json"]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        return Prune(process, out, err)

    with serving(env) as server:
        load, prune = asyncio.run(_load_around_a_prune(server, key, start_prune))
        faults = server.faults()

    # Not one request failed, on the server or on the way.
    assert load.failures == [], load.failures[:5]
    assert faults == [], faults[:5]

    # The prune succeeded, and the load ran from before it began until after it ended.
    assert prune.process.returncode == 0, prune.err.read_text()[-2000:]
    report = json.loads(prune.out.read_text())
    assert report["outcome"] == "ok"
    with sessions() as session:
        audit = session.get(RetentionRun, report["retention_run_id"])
        assert audit is not None and audit.outcome == "ok" and audit.finished_at is not None
        started, finished = as_utc(audit.started_at), as_utc(audit.finished_at)
    for role in ("reader", "writer"):
        times = load.done[role]
        during = sum(1 for at in times if started < at < finished)
        assert sum(1 for at in times if at < started) >= AROUND, role
        assert during >= DURING, f"only {during} {role} requests completed during the prune"
        assert sum(1 for at in times if at > finished) >= AROUND, role

    # Every acknowledged write is there, once; the policy could select none of them.
    acknowledged = Counter(load.acknowledged)
    assert acknowledged and set(acknowledged.values()) == {1}
    with sessions() as session:
        stored = Counter(
            session.scalars(
                select(Run.run_id).where(Run.project_id == project_id, Run.task == "load")
            )
        )
        after = set(session.scalars(select(Run.id)))
    assert stored == acknowledged, "an acknowledged write is missing or doubled"

    # What the prune deleted is in its archive, which verifies, each row exactly once.
    deleted = before - after
    affected = sum(rule["affected"] for rule in report["rules"])
    assert len(deleted) == affected > RUNS // 2
    assert verify(report["archive_uri"]).ok
    with ArchiveReader(report["archive_uri"]) as reader:
        archived = Counter(
            row["id"] for part in reader.manifest.files for row in reader.iter_rows(part)
        )
    assert set(archived.values()) == {1}
    assert set(archived) == deleted
