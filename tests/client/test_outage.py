"""Buffered recording through an outage: the server stops in the middle of a stream of 10,000
runs, the recording process restarts while it is down, then the server comes back; or the
server is killed (SIGKILL) while batches are in flight. Either way every run ends up in the
database exactly once, and the spool is empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func, select

from taskledger.store import make_session_factory
from taskledger.store.models import Run
from tests.client.conftest import seed
from tests.serving import DEADLINE, free_port, server_env, serving, wait_until

ROOT = Path(__file__).resolve().parents[2]
STREAM = 10_000
#: The SIGKILL test's stream: shorter, as what it shows (a kill while batches are in flight loses
#: and doubles nothing) needs only runs before, during and after the kill. The recorder keeps at
#: most about 1000 runs ahead of the server, so waiting for 1500 stored leaves runs to send.
KILL_STREAM = 4_000


def recorder(url: str, spool: Path, key: str, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.client.recorder", url, str(spool), *args]
    env = {**os.environ, "RECORDER_KEY": key}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"the recorder ended without {prefix!r}:\n{''.join(seen)}")


def finish(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, out
    return out


def stored(engine: Engine, project_id: object) -> Counter[str]:
    with make_session_factory(engine, read_only=True)() as session:
        query = select(Run.run_id).where(Run.project_id == project_id)
        return Counter(session.scalars(query))


def count(engine: Engine, project_id: object) -> int:
    """How many runs are stored (cheap enough to poll while the server is busy)."""
    with make_session_factory(engine, read_only=True)() as session:
        query = select(func.count()).select_from(Run).where(Run.project_id == project_id)
        return int(session.scalar(query) or 0)


def spooled(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.batch.json"))


def test_stop_restart_recorder_then_server(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    project_id, _, keys = seed(engine)
    spool = tmp_path / "spool"
    env, port = server_env(database_url, tmp_path), free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(env, port=port) as server:
        first = recorder(url, spool, keys["write"], "--last", "7000", "--pause-at", "4000")
        read_until(first, "paused")
        wait_until(lambda: count(engine, project_id) >= 3000, "runs arriving")
        server.process.terminate()  # a graceful stop: in-flight requests finish
        server.process.wait(timeout=DEADLINE)
    assert first.stdin is not None
    first.stdin.write("go\n")
    first.stdin.flush()
    finish(first)  # runs 4000-6999 went to the spool; the process ended
    assert spooled(spool)
    second = recorder(
        url, spool, keys["write"], "--first", "7000", "--last", str(STREAM), "--drain"
    )
    read_until(second, "recorded")  # the rest of the stream, spooled too
    assert count(engine, project_id) < STREAM
    with serving(env, port=port):
        finish(second)
    counts = stored(engine, project_id)
    assert len(counts) == STREAM and set(counts.values()) == {1}
    assert set(counts) == {f"stream-{n:05d}" for n in range(STREAM)}
    assert spooled(spool) == []


def test_sigkill_in_the_middle_of_batches(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    project_id, _, keys = seed(engine)
    spool = tmp_path / "spool"
    env, port = server_env(database_url, tmp_path), free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(env, port=port) as server:
        process = recorder(url, spool, keys["write"], "--last", str(KILL_STREAM), "--drain")
        wait_until(lambda: count(engine, project_id) >= 1500, "runs arriving")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=DEADLINE)
    assert count(engine, project_id) < KILL_STREAM  # killed in the middle of the stream
    wait_until(lambda: spooled(spool), "the recorder to spool what it cannot send")
    with serving(env, port=port):
        finish(process)
    counts = stored(engine, project_id)
    assert len(counts) == KILL_STREAM and set(counts.values()) == {1}
    assert spooled(spool) == []
