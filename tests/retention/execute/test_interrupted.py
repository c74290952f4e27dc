"""Interrupted runs can be found: the audit row names its archive and its lock holder while the
work goes on, and the next runner to take the lock marks a dead holder's rows ``interrupted``
(never a live one's), so step 1 of the restore runbook works for a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session

from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.format import PART_NAME, encode_row, rows_of
from taskledger.retention.archive.reader import ArchiveReader, read_manifest
from taskledger.retention.archive.stores import ArchiveError, ArchiveTarget
from taskledger.retention.audit import open_audit, record
from taskledger.retention.execute.deletes import prune_runs_before
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.restore.restore import restore
from taskledger.retention.safeguards.alerts import Alerter
from taskledger.retention.safeguards.guard import SpikeGuard
from taskledger.retention.safeguards.lock import ADVISORY_KEY, LockHeld, runner_lock
from taskledger.store.models import RetentionLease, RetentionRun, Run
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import old_and_new_runs, populated, run_policy, sessions_of
from tests.retention.restore_helpers import table_hashes

# Archived deletes in batches small enough that the run lasts many parts.
POLICY = """
name = "slow-runs"
batch_size = 20
max_table_fraction = 1.0
[[rule]]
name = "old-runs"
table = "runs"
older_than = "7d"
action = "delete"
"""
DEADLINE = 120.0


def _wait_for(condition, what: str, process: subprocess.Popen[bytes] | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while True:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the run ended before {what}: {err.decode()[-500:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


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


def _running_with_a_part(engine: Engine, archives: Path) -> Path | None:
    """The archive directory of the running execution, once its manifest lists a part."""
    with Session(engine) as session:
        running = session.scalar(
            select(func.count())
            .select_from(RetentionRun)
            .where(RetentionRun.mode == "execute", RetentionRun.outcome == "running")
        )
    if not running:
        return None
    for manifest in archives.rglob("manifest.json"):
        try:
            if read_manifest(str(manifest.parent)).files:
                return manifest.parent
        except (ArchiveError, ValueError):
            continue  # being rewritten
    return None


def _advisory_lock_free(engine: Engine) -> bool:
    """PostgreSQL: the killed runner's session is gone, and with it its advisory lock."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = 0 AND objid = :k AND objsubid = 1"
            ),
            {"k": ADVISORY_KEY},
        ).scalar()
    return not held


def _unlisted_parts(run_dir: Path) -> list[Path]:
    listed = {part.name for part in read_manifest(str(run_dir)).files}
    return [
        path
        for path in run_dir.iterdir()
        if PART_NAME.fullmatch(path.name) and path.name not in listed
    ]


def _runs_by_id(engine: Engine) -> dict[int, bytes]:
    with engine.connect() as conn:
        return {
            row["id"]: encode_row(row) for row in conn.execute(select(Run.__table__)).mappings()
        }


def test_a_killed_run_is_found_interrupted_with_its_archive(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=3000, days=400)
    original = table_hashes(engine)
    original_runs = _runs_by_id(engine)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY, encoding="utf-8")
    archives = tmp_path / "archives"

    killed = _start(engine, policy_file, archives)
    run_dir = _wait_for(
        lambda: _running_with_a_part(engine, archives), "a part while running", killed
    )
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    # A kill between storing a part and listing it leaves that part unlisted; its rows were
    # never deleted, which is what lets the runbook move it out (docs: an unlisted part).
    leftovers = _unlisted_parts(run_dir)
    assert len(leftovers) <= 1
    at_kill = _runs_by_id(engine)
    for leftover in leftovers:
        left_rows = [r["id"] for r in rows_of(leftover.read_bytes())]
        assert left_rows and all(at_kill.get(i) == original_runs[i] for i in left_rows)
    with Session(engine) as session:
        row = session.scalars(select(RetentionRun).where(RetentionRun.mode == "execute")).one()
    # Found while it is still "running": the archive and the lock holder are already there.
    assert row.outcome == "running" and row.finished_at is None
    assert row.archive_uri == str(run_dir)
    assert row.holder and f":{killed.pid}:" in row.holder

    _wait_for(lambda: _advisory_lock_free(engine), "the killed runner's lock to go")
    finisher = _start(engine, policy_file, archives)
    out, err = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, err.decode()
    finished = json.loads(out)
    with Session(engine) as session:
        row = session.get(RetentionRun, row.id)
        after = session.get(RetentionRun, finished["retention_run_id"])
    assert row is not None and after is not None
    assert row.outcome == "interrupted" and row.finished_at is not None
    assert row.archive_uri == str(run_dir)
    assert row.error and "stopped before finishing" in row.error
    assert "manifest lists" in row.error and "never deleted" in row.error
    assert after.holder in row.error
    assert after.outcome == "ok" and after.holder and after.holder != row.holder

    # Runbook step 1: the interrupted execution's archive_uri gives back every row it holds,
    # once step 2's leftover, if the kill left one, is moved out of the archive.
    with ArchiveReader(row.archive_uri) as reader:
        report = reader.verify()
    assert sorted(report.unlisted) == sorted(p.name for p in leftovers)
    assert report.ok == (not leftovers)
    for leftover in leftovers:
        leftover.rename(tmp_path / leftover.name)
    restored = restore(engine, row.archive_uri, actor="test", trigger="cli")
    with ArchiveReader(row.archive_uri) as reader:
        archived = [r["id"] for part in reader.manifest.files for r in reader.iter_rows(part)]
    assert archived and restored.inserted + restored.skipped == len(archived)
    now_runs = _runs_by_id(engine)
    assert [i for i in archived if now_runs.get(i) != original_runs[i]] == []
    restore(engine, finished["archive_uri"], actor="test", trigger="cli")
    assert table_hashes(engine) == original
    with Session(engine) as session:
        restores = session.scalars(select(RetentionRun).where(RetentionRun.mode == "restore")).all()
    assert all(r.holder and "restore" in r.holder and r.outcome == "ok" for r in restores)


def _lease_names(engine: Engine, holder: str) -> None:
    """Leave the lease as a holder that died holding it leaves it: still named, and (SQLite)
    run out; on PostgreSQL the advisory lock is free, as the server frees a dead session's."""
    with Session(engine) as session, session.begin():
        session.execute(delete(RetentionLease))
        now = utcnow()
        session.add(
            RetentionLease(
                name="retention", holder=holder, acquired_at=now, expires_at=now.replace(year=2000)
            )
        )


def test_only_a_dead_holders_running_rows_become_interrupted(engine: Engine) -> None:
    sessions = sessions_of(engine)

    def row(holder: str | None, mode: str = "execute", outcome: str | None = None) -> int:
        if outcome is not None:
            handle = record(sessions, actor="t", trigger="cli", mode=mode, outcome=outcome)
        else:
            handle = open_audit(sessions, actor="t", trigger="cli", mode=mode)
        with Session(engine) as session, session.begin():
            found = session.get(RetentionRun, handle.id)
            assert found is not None
            found.holder = holder
        return handle.id

    dead = row("dead-runner")
    dead_restore = row("dead-runner", mode="restore")
    dead_but_done = row("dead-runner", outcome="ok")
    other = row("another-runner")
    never_locked = row(None)
    mine = row(None)

    def outcomes() -> dict[int, tuple[str, str | None]]:
        with Session(engine) as session:
            return {r.id: (r.outcome, r.error) for r in session.scalars(select(RetentionRun))}

    _lease_names(engine, "dead-runner")
    with runner_lock(engine, holder="next-runner", audit_id=mine):
        seen = outcomes()
    assert seen[dead][0] == "interrupted" and "restore archive_uri" in (seen[dead][1] or "")
    assert "next-runner" in (seen[dead][1] or "")
    assert seen[dead_restore][0] == "interrupted" and "idempotent" in (seen[dead_restore][1] or "")
    assert seen[dead_but_done] == ("ok", None)
    assert seen[other][0] == seen[never_locked][0] == seen[mine][0] == "running"
    with Session(engine) as session:
        assert session.scalar(select(RetentionRun.holder).where(RetentionRun.id == mine)) == (
            "next-runner"
        )
        assert session.scalar(select(RetentionLease.holder)) is None  # released

    # A live holder is never displaced, and its rows stay as they are.
    with runner_lock(engine, holder="another-runner"):
        with pytest.raises(LockHeld, match="another-runner"), runner_lock(engine, holder="x"):
            pass
        assert outcomes()[other][0] == "running"
    # Released normally, it names nobody: the next runner marks nothing.
    with runner_lock(engine, holder="third-runner"):
        assert outcomes()[other][0] == "running"


def test_the_audit_row_names_its_archive_and_holder_while_running(
    engine: Engine, tmp_path: Path
) -> None:
    populated(engine, runs=400, days=300)
    policy = parse_policy(POLICY, default_name="slow-runs")
    seen: list[tuple[str, str | None, str | None]] = []

    def look(_rule: str, _rows: int) -> None:
        with Session(engine) as session:
            current = session.scalars(
                select(RetentionRun).where(RetentionRun.mode == "execute")
            ).one()
            seen.append((current.outcome, current.archive_uri, current.holder))

    _, report = run_policy(engine, policy, tmp_path / "archives", progress=look)
    assert report.archive_uri and len(seen) > 1
    assert set(seen) == {("running", report.archive_uri, seen[0][2])}
    assert seen[0][2] and seen[0][2].startswith("test (")


def test_a_prune_names_its_archive_while_running(engine: Engine, tmp_path: Path) -> None:
    _, cutoff = old_and_new_runs(engine, old=2500, new=2600)
    sessions = sessions_of(engine)
    seen: list[tuple[str, str | None]] = []

    def look(_rule: str, _rows: int) -> None:
        with Session(engine) as session:
            current = session.scalars(select(RetentionRun)).one()
            seen.append((current.outcome, current.archive_uri))

    guard = SpikeGuard(
        engine, max_rows=10_000, window_seconds=60, alerter=Alerter(webhook_url=None, metrics=None)
    )
    request = RetentionRequest(
        actor="test",
        trigger=RetentionTrigger.ENDPOINT,
        policy=parse_policy("", default_name="empty"),
        archive=ArchiveTarget(str(tmp_path / "archives")),
        safeguards=Safeguards(spike_guard=guard),
        progress=look,
    )
    report = prune_runs_before(engine, sessions, request, cutoff=cutoff)
    assert report.deleted == 2500 and report.archive_uri and len(seen) > 1
    assert set(seen) == {("running", report.archive_uri)}
