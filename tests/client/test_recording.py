"""Paging against SQL, ``with ledger.run`` and ``@track`` (sync and async, success and
failure), and heartbeats that move ``last_heartbeat_at``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskledger.client import AsyncLedger, Ledger
from taskledger.schemas.runs import BatchResult
from tests.client.conftest import Live
from tests.serving import wait_until


def test_iteration_over_many_pages_matches_sql(live: Live) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    runs = [
        {
            "task": f"t{i % 3}",
            "status": ("completed", "failed", "running")[i % 3],
            "started_at": (base + timedelta(minutes=i // 2)).isoformat(),  # ties on purpose
        }
        for i in range(260)
    ]
    with Ledger(live.url, live.key) as ledger:
        ledger.runs.batch(runs)
        got = [r.id for r in ledger.runs.iter(status=["completed", "failed"], page_size=40)]
        since = base + timedelta(minutes=20)
        recent = [r.id for r in ledger.runs.iter(since=since, task=["t1"], page_size=7)]
    expected = [r.id for r in live.runs_in_db() if r.status in ("completed", "failed")]
    assert len(expected) > 3 * 40 and got == expected
    assert recent == [r.id for r in live.runs_in_db(task="t1") if r.started_at >= since]
    assert len(recent) > 3 * 7


def test_with_run_records_success_and_failure(live: Live) -> None:
    with Ledger(live.url, live.key) as ledger:
        with ledger.run("summarise", inputs={"doc": 1}) as run:
            assert run.record is not None and run.record.status == "running"
            run.log("read 3 pages")
            run.output("s3://out/1.json")
            run.approve("approved", approver="ops")
        done = ledger.runs.get(run.id or 0)
        assert done.status == "completed" and done.log_excerpt == "read 3 pages"
        assert done.outputs_uri == "s3://out/1.json" and done.approver == "ops"
        assert done.finished_at is not None and done.duration_ms is not None

        with pytest.raises(ValueError, match="boom"), ledger.run("explode", log_limit=300) as bad:
            bad.log("x" * 1000)
            raise ValueError("boom")
        failed = ledger.runs.get(bad.id or 0)
        assert failed.status == "failed" and failed.log_excerpt is not None
        assert len(failed.log_excerpt) <= 300
        assert failed.log_excerpt.endswith("ValueError: boom")
        assert "raise ValueError" in failed.log_excerpt  # the end of the traceback

        @ledger.track("add", inputs=lambda a, b: {"sum_of": [a, b]})
        def add(a: int, b: int) -> int:
            return a + b

        @ledger.track()
        def divide(a: int, b: int = 0) -> float:
            return a / b

        assert add(2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            divide(1)
    added = live.runs_in_db(task="add")[0]
    assert added.status == "completed" and added.inputs == {"sum_of": [2, 3]}
    divided = live.runs_in_db(task=divide.__qualname__)[0]
    assert divided.status == "failed" and divided.inputs == {"a": 1, "b": 0}
    assert divided.log_excerpt and divided.log_excerpt.endswith("division by zero")


def test_async_run_and_track(live: Live) -> None:
    async def main() -> None:
        async with AsyncLedger(live.url, live.key) as ledger:
            async with ledger.run("fetch", inputs={"url": "x"}) as run:
                run.log("fetched")

            with pytest.raises(RuntimeError):
                async with ledger.run("fetch-bad"):
                    raise RuntimeError("no network")

            @ledger.track("plan", capture_args=False)
            async def plan(goal: str) -> str:
                await asyncio.sleep(0)
                return goal.upper()

            @ledger.track("plan-bad")
            async def plan_bad(goal: str) -> str:
                raise KeyError(goal)

            assert await plan("ship") == "SHIP"
            with pytest.raises(KeyError):
                await plan_bad("ship")
            with pytest.raises(TypeError):
                ledger.track("sync")(lambda: None)

        sync = Ledger(live.url, live.key)

        @sync.track("sync-client-async-fn")
        async def in_thread(n: int) -> int:
            return n * 2

        assert await in_thread(4) == 8
        sync.close()

    asyncio.run(main())
    by_task = {r.task: r for r in live.runs_in_db()}
    assert by_task["fetch"].status == "completed" and by_task["fetch"].log_excerpt == "fetched"
    assert by_task["fetch-bad"].status == "failed"
    assert (by_task["fetch-bad"].log_excerpt or "").endswith("RuntimeError: no network")
    assert by_task["plan"].status == "completed" and by_task["plan"].inputs is None
    assert by_task["plan-bad"].status == "failed" and by_task["plan-bad"].inputs == {"goal": "ship"}
    assert by_task["sync-client-async-fn"].inputs == {"n": 4}


def test_heartbeats_move_last_heartbeat_at(live: Live) -> None:
    with Ledger(live.url, live.key) as ledger:
        agent = ledger.agents.create(name="beating")
        with ledger.connection(agent, interval=0.05) as conn:
            opened = conn.record
            assert opened is not None and opened.last_heartbeat_at is not None
            later = wait_until(
                lambda: (
                    (c := ledger.connections.get(conn.id)).last_heartbeat_at
                    > opened.last_heartbeat_at  # type: ignore[operator]
                    and c
                ),
                "a heartbeat after the first",
            )
            assert later.status == "active" and conn.beats >= 1
            agent_beat = ledger.agents.get(agent.id).last_heartbeat_at
            assert agent_beat is not None and agent_beat > opened.last_heartbeat_at
        closed = ledger.connections.get(conn.id)
        assert closed.status == "closed" and closed.close_reason == "closed by the client"
        with pytest.raises(OSError), ledger.connection(agent.id, interval=60) as failing:
            raise OSError("disk gone")
        assert ledger.connections.get(failing.id).close_reason == "OSError: disk gone"

    async def main() -> None:
        async with AsyncLedger(live.url, live.key) as aledger:
            async with aledger.connection(agent.id, interval=0.05, reason="bye") as conn:
                first = conn.record
                assert first is not None
                while conn.beats < 2:  # each beat is a real round trip
                    await asyncio.sleep(0.05)
                now = await aledger.connections.get(conn.id)
                assert now.last_heartbeat_at > first.last_heartbeat_at  # type: ignore[operator]
            assert (await aledger.connections.get(conn.id)).close_reason == "bye"

    asyncio.run(asyncio.wait_for(main(), timeout=90))


def test_buffered_advance_persists_to_the_spool_and_reports_each_batch(
    live: Live, tmp_path: Path
) -> None:
    """States of one run recorded in turn end as its furthest; ``persist`` returns once they
    are on disk while the server is unreachable, and the spool is sent on the next start."""
    spool = tmp_path / "spool"
    key = "advance-1"
    states = [
        {"task": "t", "idempotency_key": key, "status": "queued"},
        {"task": "t", "idempotency_key": key, "status": "running"},
    ]
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    with Ledger(dead, live.key, buffer=True, spool_dir=str(spool), on_existing="advance") as off:
        for state in states:
            off.record(state)
        assert off.persist(timeout=60)  # on disk, not on the server
        assert off.buffer_stats().backlog_batches >= 1
    with Ledger(dead, live.key, buffer=True, on_existing="advance") as memory_only:
        memory_only.record(states[0])
        assert not memory_only.persist(timeout=1)  # in memory only: not persisted
    assert live.count_runs() == 0

    seen: list[tuple[list[dict[str, object]], BatchResult]] = []
    with Ledger(
        live.url,
        live.key,
        buffer=True,
        spool_dir=str(spool),
        on_existing="advance",
        on_sent=lambda items, answer: seen.append((items, answer)),
    ) as ledger:
        ledger.record({"task": "t", "idempotency_key": key, "status": "completed"})
        assert ledger.flush(timeout=60)
    [run] = live.runs_in_db()
    assert run.status == "completed" and run.idempotency_key == key
    answers = [item for _, answer in seen for item in answer.items]
    assert [a.status for a in answers] == ["queued", "running", "completed"]
    assert [a.created for a in answers] == [True, False, False]
    assert sum(len(items) for items, _ in seen) == 3
    assert list(spool.glob("*.batch.json")) == []
