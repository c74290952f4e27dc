"""Across processes: one retention runner at a time, and one scheduled run per tick.

Nothing here depends on timing. Overlap is made, not hoped for: the test holds the lock itself
while runners start. Where runners may or may not overlap, both outcomes are accepted and what
must hold either way is checked: the lock was never held twice at once, and every deleted row is
in exactly one archive part.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from taskledger.retention.archive.reader import ArchiveReader, verify
from taskledger.retention.safeguards.lock import holder_identity, runner_lock
from taskledger.retention.scheduler import claim_tick
from taskledger.store.models import RetentionRun, Run
from taskledger.store.types import utcnow
from tests.helpers import project_with_key
from tests.retention.engine_helpers import populated
from tests.serving import DEADLINE, server_env, serving, wait_until

# Small archived batches: every batch is made durable (an fsync or more) before its delete, so
# a run lasts long enough for another runner to try the lock while it is held.
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
EXIT_REFUSED = 3


def _runners(database_url: str, tmp_path: Path, count: int) -> list[subprocess.Popen[str]]:
    """``count`` ``retention run`` processes of SLOW_POLICY, started at once."""
    policy = tmp_path / "slow.toml"
    policy.write_text(SLOW_POLICY)
    command = [sys.executable, "-m", "taskledger", "retention", "run"]
    command += ["--policy", str(policy), "--yes", "--json"]
    env = server_env(database_url, tmp_path)
    return [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]


def _finish(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    """Wait for every process; (return code, stderr) of each."""
    results = []
    for process in processes:
        _, err = process.communicate(timeout=4 * DEADLINE)
        results.append((process.returncode, err))
    return results


def _executions(engine: Engine) -> list[RetentionRun]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(RetentionRun).where(RetentionRun.mode == "execute").order_by(RetentionRun.id)
            )
        )


class LockWatch:
    """Polls the audit log while runners work: how many executions hold the lock at once.

    A runner names itself on its audit row in the transaction that takes the lock, and closes
    the row before it lets go, so in any snapshot the rows ``running`` with a holder are the
    runners holding the lock: never more than one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.most = 0
        self.holders: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            with Session(self.engine) as session:
                holders = session.scalars(
                    select(RetentionRun.holder).where(
                        RetentionRun.mode == "execute",
                        RetentionRun.outcome == "running",
                        RetentionRun.holder.is_not(None),
                    )
                ).all()
            self.most = max(self.most, len(holders))
            self.holders.update(h for h in holders if h)
            self._stop.wait(0.005)

    def __enter__(self) -> LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def test_runners_refused_while_the_lock_is_held_name_its_holder(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    populated(engine, runs=300, days=400)
    before = _count_runs(engine)
    holder = f"test-holder ({holder_identity()})"
    with runner_lock(engine, holder=holder):
        # Started and finished while this test holds the lock: each one must find it held.
        results = _finish(_runners(database_url, tmp_path, 3))
    assert [code for code, _ in results] == [EXIT_REFUSED] * 3, results
    for _, err in results:
        assert "holds the lock" in err and "test-holder" in err, err
    executions = _executions(engine)
    assert [e.outcome for e in executions] == ["refused"] * 3
    assert all("test-holder" in (e.error or "") for e in executions)
    assert _count_runs(engine) == before  # nothing was deleted, nothing archived
    assert not (tmp_path / "archives").exists() or not any((tmp_path / "archives").rglob("*.gz"))


def test_simultaneous_runs_execute_one_at_a_time(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Four runners at once: each executes or is refused by the lock (they may also happen to
    run one after the other), the lock is never held by two, and every deleted row is in
    exactly one archive part (SPEC section 11)."""
    populated(engine, runs=4000, days=400)
    before = _run_ids(engine)
    with LockWatch(engine) as watch:
        results = _finish(_runners(database_url, tmp_path, 4))
    codes = [code for code, _ in results]
    assert set(codes) <= {0, EXIT_REFUSED} and 0 in codes, results
    assert all("holds the lock" in err for code, err in results if code == EXIT_REFUSED)
    executions = _executions(engine)
    outcomes = Counter(e.outcome for e in executions)
    expected = Counter(ok=codes.count(0), refused=codes.count(EXIT_REFUSED))
    assert outcomes == expected, outcomes
    assert watch.holders, "the watch never saw a runner holding the lock"
    assert watch.most == 1, "two runners held the lock at once"

    deleted = before - _run_ids(engine)
    assert deleted, "nothing was deleted"
    archived: Counter[int] = Counter()
    for execution in executions:
        if execution.outcome != "ok" or execution.archive_uri is None:
            continue
        assert verify(execution.archive_uri).ok
        with ArchiveReader(execution.archive_uri) as reader:
            archived.update(
                row["id"] for part in reader.manifest.files for row in reader.iter_rows(part)
            )
    assert [key for key, n in archived.items() if n > 1] == [], "a row is in two archive parts"
    assert set(archived) == deleted, "a deleted row is in no archive, or an archived one remains"
    with Session(engine) as session:
        eligible = session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.status == "completed", Run.started_at < utcnow() - timedelta(days=8))
        )
    assert eligible == 0


def _run_ids(engine: Engine) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(Run.id)))


def _count_runs(engine: Engine) -> int:
    return len(_run_ids(engine))


def test_a_tick_is_claimed_once(engine: Engine) -> None:
    tick = utcnow().replace(microsecond=0)
    assert claim_tick(engine, tick, "a") is True
    assert claim_tick(engine, tick, "b") is False
    assert claim_tick(engine, tick - timedelta(seconds=5), "b") is False
    assert claim_tick(engine, tick + timedelta(seconds=5), "b") is True


#: Ticks every 3 seconds: a tick's run of the default policy on this little data takes a
#: fraction of that, so consecutive ticks do not contend for the lock even on a loaded machine.
SCHEDULE = "* * * * * */3"
TICKS = 3


def scheduled_executions(engine: Engine, since: datetime | None = None) -> list[RetentionRun]:
    """The finished executions of the in-process schedule (begun after ``since``)."""
    query = select(RetentionRun).where(
        RetentionRun.trigger == "schedule",
        RetentionRun.mode == "execute",
        RetentionRun.outcome != "running",
    )
    if since is not None:
        query = query.where(RetentionRun.started_at > since)
    with Session(engine) as session:
        return list(session.scalars(query))


def ticks_since(engine: Engine, since: datetime) -> int:
    """How many ticks executed after ``since``: the servers start one after the other, and a
    tick counts once all of them are up (on a loaded machine the first may run several alone)."""
    return len({run.reason for run in scheduled_executions(engine, since)})


def check_ticks(executions: list[RetentionRun]) -> None:
    """Each tick executed exactly once, by the schedule, and every execution succeeded."""
    ticks = Counter(run.reason for run in executions)
    assert len(ticks) >= TICKS, ticks
    assert all(reason and reason.startswith("scheduled tick ") for reason in ticks), ticks
    assert set(ticks.values()) == {1}, ticks
    assert {(run.outcome, run.error) for run in executions} == {("ok", None)}
    assert all(run.actor.startswith("schedule:") for run in executions)


def test_two_servers_run_each_tick_once(engine: Engine, database_url: str, tmp_path: Path) -> None:
    populated(engine, runs=200, days=120)
    _, key = project_with_key(engine)
    env = server_env(
        database_url,
        tmp_path,
        TASKLEDGER_RETENTION_SCHEDULE=SCHEDULE,
        TASKLEDGER_RETENTION_POLICY="default",
    )
    statuses: Counter[int] = Counter()
    with ExitStack() as stack:
        servers = [stack.enter_context(serving(env)) for _ in range(2)]

        def alive() -> None:
            for server in servers:
                server.check_alive()
                # Both keep answering while the schedule runs.
                response = httpx.get(
                    f"{server.url}/api/v1/runs", headers={"X-API-Key": key}, timeout=DEADLINE
                )
                statuses[response.status_code] += 1

        all_up = utcnow()
        wait_until(
            lambda: ticks_since(engine, all_up) >= TICKS,
            f"{TICKS} ticks executed with both servers up",
            timeout=2 * DEADLINE,
            interval=0.5,
            alive=alive,
        )
        faults = [line for server in servers for line in server.faults()]
    assert statuses and set(statuses) == {200}, statuses
    assert faults == []
    check_ticks(scheduled_executions(engine))
