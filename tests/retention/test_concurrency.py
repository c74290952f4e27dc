"""Across processes: one retention runner at a time, and one scheduled run per tick."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.retention.scheduler import claim_tick
from taskledger.store.models import RetentionRun
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import populated

# Small archived batches: every batch is made durable (an fsync or more) before its delete, so
# the run lasts seconds whatever the CPU, and the four processes surely overlap.
SLOW_POLICY = """
name = "slow-ops"
batch_size = 20
max_table_fraction = 1.0
[[rule]]
name = "runs-completed"
table = "runs"
older_than = "7d"
status = ["completed"]
action = "delete"
"""


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.update(
        {
            "TASKLEDGER_DATABASE_URL": database_url,
            "TASKLEDGER_DATA_DIR": str(tmp_path / "data"),
            "TASKLEDGER_ARCHIVE_URL": str(tmp_path / "archives"),
            **extra,
        }
    )
    return env


def test_simultaneous_runs_execute_one_at_a_time(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    populated(engine, runs=12_000, days=400)
    policy = tmp_path / "slow.toml"
    policy.write_text(SLOW_POLICY)
    env = _env(database_url, tmp_path)
    command = [
        sys.executable,
        "-m",
        "taskledger",
        "retention",
        "run",
        "--policy",
        str(policy),
        "--yes",
        "--json",
    ]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=240) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 3, 3, 3], [
        (p.returncode, r[1][-300:]) for p, r in zip(processes, results, strict=True)
    ]
    refusals = [err for p, (_, err) in zip(processes, results, strict=True) if p.returncode == 3]
    assert all("holds the lock" in err for err in refusals)
    with Session(engine) as session:
        executions = session.scalars(
            select(RetentionRun).where(RetentionRun.mode == "execute")
        ).all()
    assert Counter(e.outcome for e in executions) == {"ok": 1, "refused": 3}


def test_a_tick_is_claimed_once(engine: Engine) -> None:
    tick = utcnow().replace(microsecond=0)
    assert claim_tick(engine, tick, "a") is True
    assert claim_tick(engine, tick, "b") is False
    assert claim_tick(engine, tick - timedelta(seconds=5), "b") is False
    assert claim_tick(engine, tick + timedelta(seconds=5), "b") is True


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_servers_run_each_tick_once(engine: Engine, database_url: str, tmp_path: Path) -> None:
    populated(engine, runs=200, days=30)
    env = _env(
        database_url,
        tmp_path,
        TASKLEDGER_RETENTION_SCHEDULE="* * * * * */2",
        TASKLEDGER_RETENTION_POLICY="default",
    )
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "taskledger", "serve", "--no-migrate", "--port", str(_port())],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        time.sleep(9)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.communicate(timeout=30)
    with Session(engine) as session:
        scheduled = session.scalars(
            select(RetentionRun).where(
                RetentionRun.trigger == "schedule", RetentionRun.mode == "execute"
            )
        ).all()
    ticks = Counter(run.reason for run in scheduled)
    assert len(ticks) >= 2, ticks
    assert set(ticks.values()) == {1}, ticks
    assert {run.outcome for run in scheduled} <= {"ok"}
    holders = {run.actor for run in scheduled}
    assert all(h.startswith("schedule:") for h in holders)
