"""Crash safety: a retention run killed with SIGKILL at any point loses nothing.

Real `taskledger retention run` processes are killed at random moments (by the number of
archive parts written, and by time), over and over, then one run finishes the job. On
PostgreSQL the old partitions of runs take the whole-partition path, which is killed too. Restoring
every archive, newest first, gives back a database identical row for row to the original. A
part a kill left unlisted holds only rows still in the database; it is moved out before restore.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from taskledger.retention.archive.format import rows_of
from taskledger.retention.archive.reader import list_archives, verify
from taskledger.retention.restore.judge import table_info
from taskledger.retention.restore.restore import restore
from taskledger.store.models import Base
from taskledger.store.partitions import is_partitioned, list_partitions
from tests.retention.engine_helpers import populated
from tests.retention.restore_helpers import MIXED_POLICY, table_hashes
from tests.serving import DEADLINE

# Every kind of action, in batches small enough that a run has many points to die at.
POLICY = "batch_size = 20\nmax_table_fraction = 1.0\n" + MIXED_POLICY

KILLS = 10


def _archive_parts(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.jsonl.gz")) if root.exists() else 0


def _start(engine: Engine, policy_file: Path, archives: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TASKLEDGER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "TASKLEDGER_ARCHIVE_URL": str(archives),
        "TASKLEDGER_DATA_DIR": str(archives.parent / "data"),
    }
    command = [sys.executable, "-m", "taskledger", "retention", "run", "--policy"]
    command += [str(policy_file), "--yes", "--json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_at_a_random_point(
    process: subprocess.Popen[bytes], archives: Path, rng: random.Random
) -> bool:
    """SIGKILL ``process`` after a random number of new archive parts, or a random delay."""
    start_parts = _archive_parts(archives)
    wanted = start_parts + rng.randint(1, 8)
    deadline = time.monotonic() + DEADLINE
    while _archive_parts(archives) < wanted and process.poll() is None:
        assert time.monotonic() < deadline, "the retention run made no progress"
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.05))  # and somewhere inside the next batch
    if process.poll() is not None:
        process.communicate()
        return False
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return True


def _partitions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {p.name for p in list_partitions(conn)} if is_partitioned(conn) else set()


def _move_unlisted_parts_out(uri: str, aside: Path) -> dict[str, set[Any]]:
    """A kill between a part and its manifest update leaves that part unlisted: verify fails on
    it and restore refuses the archive. The part is moved out, as the docs tell an operator;
    returns the keys it held, by table (its rows were never deleted by the run that wrote it)."""
    report = verify(uri)
    assert all(check.ok for check in report.files), report.messages
    assert report.ok == (not report.unlisted), report.messages
    keys: dict[str, set[Any]] = {}
    for name in report.unlisted:
        path = Path(uri) / name
        table = Base.metadata.tables[name.rsplit("-", 1)[0]]
        key = table.primary_key.columns.values()[0]
        found = {
            table_info(table.name).decode(row, where=name)[key.name]
            for row in rows_of(path.read_bytes())
        }
        keys.setdefault(table.name, set()).update(found)
        aside.mkdir(exist_ok=True)
        path.rename(aside / f"{report.run_id}-{name}")
    assert verify(uri).ok
    return keys


def test_killed_runs_lose_nothing_and_restore_gives_back_the_original(
    engine: Engine, tmp_path: Path
) -> None:
    populated(engine, runs=3000, days=400, agents=4)
    original = table_hashes(engine)
    partitions = _partitions(engine)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY, encoding="utf-8")
    archives = tmp_path / "archives"
    rng = random.Random(20261128)

    killed = 0
    for _ in range(KILLS * 3):
        if killed == KILLS:
            break
        killed += _kill_at_a_random_point(_start(engine, policy_file, archives), archives, rng)
    assert killed == KILLS, "every run finished before it could be killed"

    finisher = _start(engine, policy_file, archives)
    out, err = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, err.decode()
    assert json.loads(out)["outcome"] == "ok"
    assert table_hashes(engine) != original, "the runs should have changed the database"
    if engine.dialect.name == "postgresql":
        # Old partitions were covered whole: the whole-partition path was taken (in parts of
        # batch_size rows, so kills landed inside its stream too).
        assert _partitions(engine) < partitions, "no partition was dropped"

    listed = list_archives(str(archives))  # newest first
    assert len(listed) >= KILLS // 2
    unlisted: dict[str, set[Any]] = {}
    for archive in listed:
        for table, keys in _move_unlisted_parts_out(archive.uri, tmp_path / "unlisted").items():
            unlisted.setdefault(table, set()).update(keys)
        restore(engine, archive.uri, actor="test", trigger="cli")
    assert table_hashes(engine) == original
    # Nothing was lost with the unlisted parts: every row they held is back (or never left).
    for table, keys in unlisted.items():
        column = Base.metadata.tables[table].primary_key.columns.values()[0]
        with engine.connect() as conn:
            present = set(conn.scalars(select(column).where(column.in_(keys))))
        assert present == keys, table

    # Restoring again changes nothing: restore is idempotent.
    again = [restore(engine, a.uri, actor="test", trigger="cli") for a in listed]
    assert sum(report.inserted + report.restored for report in again) == 0
    assert table_hashes(engine) == original
