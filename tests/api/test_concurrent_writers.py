"""Many agents writing at once to one real server: no errors, and every acknowledged run is stored
exactly once (SPEC section 11). On SQLite this is what ``BEGIN IMMEDIATE`` is for: a write
transaction waits for the lock instead of failing when another writer got there first."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from taskledger.store import make_session_factory
from taskledger.store.models import Run
from tests.helpers import project_with_key
from tests.serving import server_env, serving

WRITERS = 32
BATCH_WRITERS = 8
READERS = 4
RUNS_PER_WRITER = 12
BATCHES_PER_WRITER = 3
BATCH_SIZE = 50
#: Keys several writers send at once: each must come out as one run.
SHARED_KEYS = [f"shared-{i}" for i in range(RUNS_PER_WRITER // 4)]


class Outcome:
    """What the clients were told: statuses, and the run ids the server acknowledged."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.acknowledged: list[str] = []
        self.shared: dict[str, set[int]] = {key: set() for key in SHARED_KEYS}

    def note(self, response: httpx.Response, ok: tuple[int, ...]) -> bool:
        self.statuses[response.status_code] += 1
        if response.status_code not in ok:
            self.failures.append(f"{response.status_code} {response.text[:200]}")
            return False
        return True


async def _writer(client: httpx.AsyncClient, n: int, out: Outcome) -> None:
    for i in range(RUNS_PER_WRITER):
        body: dict[str, Any] = {"task": f"w{n}", "run_id": f"w{n}-{i}", "status": "completed"}
        headers = {}
        if i % 4 == 0:  # now and then a key other writers are sending at the same moment
            key = SHARED_KEYS[i // 4]
            headers["Idempotency-Key"] = key
            body["run_id"] = f"{key}-from-w{n}"
        response = await client.post("/api/v1/runs", json=body, headers=headers)
        if out.note(response, (200, 201)):
            run = response.json()
            if "Idempotency-Key" in headers:
                out.shared[headers["Idempotency-Key"]].add(run["id"])
            else:
                out.acknowledged.append(run["run_id"])


async def _batch_writer(client: httpx.AsyncClient, n: int, out: Outcome) -> None:
    for b in range(BATCHES_PER_WRITER):
        runs = [
            {"task": f"b{n}", "run_id": f"b{n}-{b}-{i}", "status": "failed", "inputs": {"i": i}}
            for i in range(BATCH_SIZE)
        ]
        response = await client.post("/api/v1/runs:batch", json={"runs": runs})
        if out.note(response, (201,)):
            out.acknowledged.extend(item["run_id"] for item in response.json()["items"])


async def _reader(client: httpx.AsyncClient, out: Outcome, stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.note(await client.get("/api/v1/runs", params={"limit": 20}), (200,))


async def _load(url: str, key: str) -> Outcome:
    out = Outcome()
    # Idle connections are dropped well before the server's keep-alive timeout (5 s), so that no
    # request is sent on a connection the server is closing at that moment.
    limits = httpx.Limits(max_connections=WRITERS + BATCH_WRITERS + READERS, keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=120, limits=limits
    ) as client:
        stop = asyncio.Event()
        readers = [asyncio.create_task(_reader(client, out, stop)) for _ in range(READERS)]
        await asyncio.gather(
            *(_writer(client, n, out) for n in range(WRITERS)),
            *(_batch_writer(client, n, out) for n in range(BATCH_WRITERS)),
        )
        stop.set()
        await asyncio.gather(*readers)
    return out


def test_concurrent_writers_get_no_errors_and_lose_nothing(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    project_id, key = project_with_key(engine)
    with serving(server_env(database_url, tmp_path)) as server:
        out = asyncio.run(_load(server.url, key))
        log = server.output()
    assert out.failures == [], (out.statuses, out.failures[:5], log[-2000:])
    expected = WRITERS * (RUNS_PER_WRITER - RUNS_PER_WRITER // 4)
    expected += BATCH_WRITERS * BATCHES_PER_WRITER * BATCH_SIZE
    assert len(out.acknowledged) == expected
    with make_session_factory(engine, read_only=True)() as session:
        stored = Counter(
            session.scalars(select(Run.run_id).where(Run.project_id == project_id)).all()
        )
        for shared_key in SHARED_KEYS:
            # However many writers sent it at once, one run, and each was told the same id.
            assert len(out.shared[shared_key]) == 1, out.shared
            count = session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.project_id == project_id, Run.idempotency_key == shared_key)
            )
            assert count == 1
    acknowledged = Counter(out.acknowledged)
    assert all(n == 1 for n in acknowledged.values())
    assert all(stored[run_id] == 1 for run_id in acknowledged), "a run is missing or doubled"
    assert sum(stored.values()) == expected + len(SHARED_KEYS)
