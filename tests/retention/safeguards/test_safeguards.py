"""Safeguards: caps, the table-fraction guard, dry-run-only mode, the single-runner lock."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from taskledger.enums import RetentionTrigger
from taskledger.errors import SafeguardRefused
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.safeguards.lock import LEASE, LockHeld, holder_is_gone, runner_lock
from taskledger.store.models import RetentionLease, RetentionRun, Run
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import count, populated, sessions_of


def _execute(  # type: ignore[no-untyped-def]
    engine: Engine, policy, tmp_path: Path, *, reason=None, **safeguards
):
    sessions = sessions_of(engine)
    request = RetentionRequest(
        actor="t",
        trigger=RetentionTrigger.CLI,
        reason=reason,
        policy=policy,
        archive=ArchiveTarget(str(tmp_path)),
        safeguards=Safeguards(**safeguards),
    )
    previewed = preview_policy(sessions, request)
    return previewed, execute_policy(engine, sessions, request.confirming(previewed))


def _last_execute(engine: Engine) -> RetentionRun:
    with Session(engine) as session:
        return session.scalars(
            select(RetentionRun)
            .where(RetentionRun.mode.in_(["execute", "preview"]))
            .order_by(RetentionRun.id.desc())
            .limit(1)
        ).one()


def test_max_rows_per_run(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=500, days=300)
    policy = dataclasses.replace(PRESETS["ops"], max_rows_per_run=10)
    with pytest.raises(SafeguardRefused, match="max_rows_per_run"):
        _execute(engine, policy, tmp_path, force=True, reason="r")
    assert count(engine, Run) == 500
    assert _last_execute(engine).outcome == "refused"


def test_table_fraction_needs_force_and_reason(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=500, days=300)
    policy = PRESETS["ops"]
    with pytest.raises(SafeguardRefused, match="max_table_fraction"):
        _execute(engine, policy, tmp_path)
    with pytest.raises(SafeguardRefused, match="--reason"):
        _execute(engine, policy, tmp_path, force=True)
    with pytest.raises(SafeguardRefused, match="--reason"):  # blank is no reason
        _execute(engine, policy, tmp_path, force=True, reason="  ")
    assert count(engine, Run) == 500
    _, report = _execute(engine, policy, tmp_path, force=True, reason="quarterly clean-up")
    assert report.outcome == "ok" and report.affected > 250
    audit = _last_execute(engine)
    assert audit.reason == "quarterly clean-up" and audit.outcome == "ok"


def test_dry_run_only_previews_and_audits(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=300, days=300)
    previewed, report = _execute(
        engine, PRESETS["ops"], tmp_path / "archives", force=True, reason="r", dry_run_only=True
    )
    assert report.outcome == "dry-run" and report.affected == 0
    assert [r.matched for r in report.rules] == [r.matched for r in previewed.rules]
    assert count(engine, Run) == 300
    audit = _last_execute(engine)
    assert audit.mode == "preview" and audit.outcome == "dry-run"
    assert not (tmp_path / "archives").exists()


def test_the_lock_admits_one_runner(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=200, days=300)
    with runner_lock(engine, holder="other-host:42"):
        with pytest.raises(LockHeld, match="other-host:42"):
            _execute(engine, PRESETS["ops"], tmp_path, force=True, reason="r")
        with pytest.raises(LockHeld), runner_lock(engine):
            pass
    assert count(engine, Run) == 200
    assert _last_execute(engine).outcome == "refused"
    # Released: the next run goes ahead.
    _, report = _execute(engine, PRESETS["ops"], tmp_path, force=True, reason="r")
    assert report.outcome == "ok"


def test_an_expired_sqlite_lease_can_be_taken(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL uses an advisory lock, released when its holder disconnects")
    with runner_lock(engine, holder="crashed:1"):
        pass
    with Session(engine) as session, session.begin():
        session.execute(
            update(RetentionLease).values(
                holder="crashed:1", expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    with runner_lock(engine, holder="me:2"), Session(engine) as session:
        assert session.scalar(select(RetentionLease.holder)) == "me:2"
    with Session(engine) as session, session.begin():
        session.execute(
            update(RetentionLease).values(holder="alive:3", expires_at=utcnow() + LEASE)
        )
    with pytest.raises(LockHeld, match="alive:3"), runner_lock(engine):
        pass


def test_a_sqlite_lease_of_a_killed_process_on_this_host_is_taken_at_once(
    engine: Engine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL uses an advisory lock, released when its holder disconnects")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    holders = {
        "gone": f"cli@{host} ({host}:{dead.pid}:abc123)",
        "alive": f"cli@{host} ({host}:{os.getppid()}:abc123)",
        "elsewhere": f"cli (other-host-name:{dead.pid}:abc123)",
    }
    assert holder_is_gone(holders["gone"])
    assert not holder_is_gone(holders["alive"]) and not holder_is_gone(holders["elsewhere"])
    assert not holder_is_gone("free text") and not holder_is_gone(None)
    for name, holder in holders.items():
        with Session(engine) as session, session.begin():
            session.execute(delete(RetentionLease))
            session.add(
                RetentionLease(
                    name="retention",
                    holder=holder,
                    acquired_at=utcnow(),
                    expires_at=utcnow() + LEASE,
                )
            )
        if name == "gone":
            with runner_lock(engine, holder="me:2"), Session(engine) as session:
                assert session.scalar(select(RetentionLease.holder)) == "me:2"
        else:
            with pytest.raises(LockHeld, match=re.escape(holder)), runner_lock(engine):
                pass
