"""Three replicas on one PostgreSQL database (SPEC sections 5 and 11): the retention schedule
runs each tick once across them while writers spread over all three lose nothing, and the spike
window is one window for all of them.

PostgreSQL only: replicas share a database server. SQLite is one file on one host; two servers
on it running the schedule are tested in ``test_concurrency.py``.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from taskledger.retention.execute.deletes import PRUNE_NAME
from taskledger.store.engine import for_writing
from taskledger.store.models import DeletionEvent, Run
from taskledger.store.types import utcnow
from tests.conftest import ADMIN_KEY
from tests.helpers import project_with_key
from tests.retention.test_concurrency import (
    SCHEDULE,
    TICKS,
    check_ticks,
    scheduled_executions,
    ticks_since,
)
from tests.serving import DEADLINE, Server, server_env, serving, wait_until

REPLICAS = 3
WRITERS_PER_REPLICA = 2
SPIKE_MAX_ROWS = 100
#: Far longer than the test: the window holds whatever the machine's load.
SPIKE_WINDOW = 3600
OLD_RUNS = 3000  # queued runs from long ago: no tick's policy selects them, the seed prune does
RECENT_RUNS = 4000  # so that the prune stays within max_table_fraction


def _add_runs(
    engine: Engine, project_id: uuid.UUID, count: int, *, days_ago: float, status: str
) -> None:
    started = datetime.now(UTC) - timedelta(days=days_ago)
    with for_writing(engine).begin() as conn:
        conn.execute(
            insert(Run),
            [
                {
                    "project_id": project_id,
                    "task": f"seeded-{status}",
                    "run_id": uuid.uuid4().hex,
                    "status": status,
                    "started_at": started,
                }
                for _ in range(count)
            ],
        )


class Traffic:
    """Writers and readers spread over the replicas until stopped; what each was told."""

    def __init__(self, servers: list[Server], key: str) -> None:
        self.servers = servers
        self.key = key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[tuple[int, int]] = Counter()  # (replica, status)
        self.failures: list[str] = []
        self.acknowledged: list[str] = []
        self.threads = [
            threading.Thread(target=self._write, args=(replica, n))
            for replica in range(len(servers))
            for n in range(WRITERS_PER_REPLICA)
        ]
        self.threads += [
            threading.Thread(target=self._read, args=(replica,)) for replica in range(len(servers))
        ]

    def everywhere(self) -> bool:
        """Whether every replica has answered both writers and readers."""
        with self.lock:
            answered = {(replica, status) for replica, status in self.statuses}
        return all(
            (replica, 200) in answered and (replica, 201) in answered
            for replica in range(len(self.servers))
        )

    def _client(self, replica: int) -> httpx.Client:
        return httpx.Client(
            base_url=self.servers[replica].url,
            headers={"X-API-Key": self.key},
            timeout=DEADLINE,
            limits=httpx.Limits(keepalive_expiry=1.0),
        )

    def _note(self, replica: int, response: httpx.Response, ok: int) -> bool:
        with self.lock:
            self.statuses[(replica, response.status_code)] += 1
            if response.status_code != ok:
                self.failures.append(f"replica {replica}: {response.status_code} {response.text}")
                return False
        return True

    def _write(self, replica: int, n: int) -> None:
        with self._client(replica) as client:
            i = 0
            while not self.stop.is_set():
                prefix = f"r{replica}w{n}-{i}"
                try:
                    if i % 4 == 3:
                        runs = [{"task": "spread", "run_id": f"{prefix}-{k}"} for k in range(10)]
                        response = client.post("/api/v1/runs:batch", json={"runs": runs})
                        if self._note(replica, response, 201):
                            items = response.json()["items"]
                            with self.lock:
                                self.acknowledged.extend(item["run_id"] for item in items)
                    else:
                        body = {"task": "spread", "run_id": prefix, "status": "completed"}
                        response = client.post("/api/v1/runs", json=body)
                        if self._note(replica, response, 201):
                            with self.lock:
                                self.acknowledged.append(response.json()["run_id"])
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"replica {replica}: {type(exc).__name__}: {exc}")
                i += 1

    def _read(self, replica: int) -> None:
        with self._client(replica) as client:
            while not self.stop.is_set():
                try:
                    response = client.get("/api/v1/runs", params={"task": "spread", "limit": 50})
                    self._note(replica, response, 200)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"replica {replica}: {type(exc).__name__}: {exc}")

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(2 * DEADLINE)


def _spike_alerts(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=DEADLINE).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return sum(sample.value for sample in families["taskledger_spike_alerts"].samples)


def _prune_at_once(servers: list[Server], cutoff: datetime) -> list[httpx.Response]:
    """The seed prune sent to every server in ``servers`` at the same moment."""
    start = threading.Barrier(len(servers))
    responses: list[Any] = [None] * len(servers)

    def prune(i: int) -> None:
        start.wait(DEADLINE)
        responses[i] = httpx.delete(
            f"{servers[i].url}/agents/tasks/before",
            params={"date": cutoff.isoformat()},
            headers={"X-Admin-Key": ADMIN_KEY},
            timeout=2 * DEADLINE,
        )

    threads = [threading.Thread(target=prune, args=(i,)) for i in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * DEADLINE)
    assert all(isinstance(r, httpx.Response) for r in responses), responses
    return responses


def test_three_replicas_run_each_tick_once_lose_no_write_and_share_the_spike_window(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "replicas share a PostgreSQL database; SQLite is one file on one host (two servers "
            "on one SQLite file run the schedule in test_concurrency.py)"
        )
    project_id, key = project_with_key(engine)
    _add_runs(engine, project_id, 200, days_ago=200, status="completed")  # for the first tick
    _add_runs(engine, project_id, OLD_RUNS, days_ago=200, status="queued")
    _add_runs(engine, project_id, RECENT_RUNS, days_ago=1, status="queued")
    env = server_env(
        database_url,
        tmp_path,
        TASKLEDGER_RETENTION_SCHEDULE=SCHEDULE,
        TASKLEDGER_RETENTION_POLICY="default",
        TASKLEDGER_ADMIN_API_KEY=ADMIN_KEY,
        TASKLEDGER_SPIKE_MAX_ROWS=str(SPIKE_MAX_ROWS),
        TASKLEDGER_SPIKE_WINDOW_SECONDS=str(SPIKE_WINDOW),
    )
    with ExitStack() as stack:
        servers = [stack.enter_context(serving(env)) for _ in range(REPLICAS)]

        def alive() -> None:
            for server in servers:
                server.check_alive()

        # The schedule, with writers and readers on every replica.
        with Traffic(servers, key) as traffic:
            # Counted from once every replica has answered: on a loaded machine the first
            # replicas up may run several ticks before the last one is ready.
            wait_until(traffic.everywhere, "every replica answering", alive=alive)
            all_up = utcnow()
            wait_until(
                lambda: ticks_since(engine, all_up) >= TICKS,
                f"{TICKS} ticks executed with every replica up and under load",
                timeout=2 * DEADLINE,
                interval=0.5,
                alive=alive,
            )
        assert traffic.failures == [], traffic.failures[:5]
        assert {replica for replica, _ in traffic.statuses} == set(range(REPLICAS))
        check_ticks(scheduled_executions(engine))
        acknowledged = Counter(traffic.acknowledged)
        assert acknowledged and set(acknowledged.values()) == {1}
        with Session(engine) as session:
            stored = Counter(session.scalars(select(Run.run_id).where(Run.task == "spread")))
            # Retention runs are bounded by their caps, not counted in the window.
            assert session.scalar(select(func.count()).select_from(DeletionEvent)) == 0
        assert stored == acknowledged, "an acknowledged write is missing or doubled"

        # Two replicas prune at once while a spike limit is set: both are capped runs, neither
        # is refused by the window, and between them every old run goes, once.
        cutoff = (datetime.now(UTC) - timedelta(days=100)).replace(microsecond=0)
        with Session(engine) as session:
            old = session.scalar(
                select(func.count()).select_from(Run).where(Run.started_at < cutoff)
            )
        assert old == OLD_RUNS
        pruning, third = servers[:2], servers[2]
        responses = _prune_at_once(pruning, cutoff)
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        deleted = [r.json()["deleted"] for r in responses]
        assert sum(deleted) == OLD_RUNS, deleted
        with Session(engine) as session:
            assert (
                session.scalar(select(func.count()).select_from(Run).where(Run.started_at < cutoff))
                == 0
            )
            events = session.scalars(
                select(DeletionEvent).where(DeletionEvent.source == PRUNE_NAME)
            ).all()
            victim = session.scalar(select(Run.id).where(Run.task == "spread").limit(1))
        # One window for all: it holds what both replicas deleted (each counted what it was
        # about to delete, at least what it then did), far over the limit.
        assert len(events) >= sum(1 for n in deleted if n), events
        assert sum(event.rows for event in events) >= OLD_RUNS > SPIKE_MAX_ROWS
        # Each replica whose prune took the window over the limit raised the alert.
        for server, n in zip(pruning, deleted, strict=True):
            if n > SPIKE_MAX_ROWS:
                assert _spike_alerts(server) >= 1
                assert "deletion spike" in server.output()
        assert max(deleted) > SPIKE_MAX_ROWS

        # The third replica, which pruned nothing, refuses an API delete: the window is full.
        refused = httpx.delete(
            f"{third.url}/api/v1/runs/{victim}", headers={"X-API-Key": key}, timeout=DEADLINE
        )
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= SPIKE_WINDOW
        assert "spike" in refused.json()["detail"]
        assert _spike_alerts(third) >= 1
        with Session(engine) as session:
            assert session.get(Run, victim) is not None
        faults = [line for server in servers for line in server.faults()]
        # The whole log of a replica with a fault, for its traceback.
        logs = "\n".join(server.output() for server in servers if server.faults())
    assert faults == [], logs[-8000:]
