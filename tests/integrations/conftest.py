"""Real parts for the Celery collector's tests: a ``taskledger serve``, Celery workers and
``taskledger collect celery`` as subprocesses, on the machine's RabbitMQ and Redis.

Every test gets its own project, task queue, events exchange, AMQP events queue and Redis
database, so that no test sees another's events. The collector writes over HTTP and never
touches the database itself, so its tests run on SQLite only: what they check is the
collector, not the server's backends (which the server's own tests cover).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis
from celery import Celery
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from taskledger.client import Ledger
from tests.client.conftest import Live, seed
from tests.conftest import ADMIN_KEY
from tests.helpers import PASSWORD
from tests.serving import DEADLINE, Server, clean_env, server_env, serving, wait_until

ROOT = Path(__file__).resolve().parents[2]
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379"
#: The Redis database the flaky task counts its failures in.
COUNTER_DB = 15


def _reachable(url: str) -> bool:
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def celery_shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Any, dict[str, str]]]:
    from taskledger.store import make_engine
    from tests.client.conftest import database_for

    where = tmp_path_factory.mktemp("celery-server")
    url = database_for("sqlite", request, where)
    env = server_env(url, where, TASKLEDGER_ADMIN_API_KEY=ADMIN_KEY)
    engine = make_engine(url)
    try:
        with serving(env) as server:
            yield server, engine, env
    finally:
        engine.dispose()


@pytest.fixture
def live(celery_shared: tuple[Server, Any, dict[str, str]]) -> Live:
    server, engine, env = celery_shared
    project_id, email, keys = seed(engine)
    answer = httpx.post(
        f"{server.url}/api/v1/auth/token",
        data={"username": email, "password": PASSWORD},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return Live(
        server=server,
        engine=engine,
        env=env,
        project_id=project_id,
        key=keys["write"],
        admin_scope_key=keys["admin"],
        read_key=keys["read"],
        token=answer.json()["access_token"],
    )


@dataclass
class Proc:
    """A child process and its log file."""

    process: subprocess.Popen[str]
    log: IO[str]
    name: str

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.output()[-5000:]}")

    def counters(self) -> dict[str, float]:
        """The counters a collector wrote on standard output as it ended (Prometheus text)."""
        text = self.output()
        start = text.find("# HELP taskledger_collector_")
        assert start >= 0, f"{self.name} wrote no counters:\n{text[-3000:]}"
        return {
            sample.name.removeprefix("taskledger_collector_").removesuffix("_total"): sample.value
            for family in text_string_to_metric_families(text[start:])
            for sample in family.samples
        }

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} did not stop on signal {sig}:\n{self.output()[-5000:]}")


@dataclass
class CeleryKit:
    """One test's Celery set-up: broker, names, and the processes it started."""

    broker: str
    live: Live
    tmp: Path
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    backend: str | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"celeryev.tl-{self.uid}"

    @property
    def queue(self) -> str:
        return f"tl-tasks-{self.uid}"

    @property
    def events_queue(self) -> str:
        return f"tl-events-{self.uid}"

    def worker_env(self, *, events: bool = True, **extra: str) -> dict[str, str]:
        return clean_env(
            TL_BROKER=self.broker,
            TL_BACKEND=self.backend or "",
            TL_QUEUE=self.queue,
            TL_EXCHANGE=self.exchange,
            TL_EVENTS="1" if events else "0",
            TL_COUNTER=f"{REDIS}/{COUNTER_DB}",
            PYTHONPATH=str(ROOT),
            **extra,
        )

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> Proc:
        log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by close()
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        proc = Proc(process, log, name)
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "w1", *, events: bool = True, **extra: str) -> Proc:
        """A real worker (threads pool, 2 threads), once it says it is ready."""
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integrations.celery_app",
            "worker",
            "--pool=threads",
            "--concurrency=2",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}-{self.uid}@tl",
            "-Q",
            self.queue,
            "-l",
            "INFO",
        ]
        proc = self._spawn(f"worker {name}", command, self.worker_env(events=events, **extra))
        wait_until(lambda: " ready." in proc.output(), f"{proc.name} ready", alive=proc.check_alive)
        return proc

    def collector(self, *extra: str, queue: str | None = None, name: str = "collector") -> Proc:
        """``taskledger collect celery`` for this kit, once it consumes."""
        command = [
            sys.executable,
            "-m",
            "taskledger",
            "collect",
            "celery",
            "--broker",
            self.broker,
            "--project",
            str(self.live.project_id),
            "--url",
            self.live.url,
            "--api-key",
            self.live.key,
            "--exchange",
            self.exchange,
            "--queue-name",
            queue or self.events_queue,
            "--queue-expires",
            "600",
            *extra,
        ]
        # The default spool directory, under this test's own state directory.
        env = clean_env(PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(self.tmp / "state"))
        proc = self._spawn(name, command, env)
        wait_until(
            lambda: "collector ready" in proc.output(), f"{name} ready", alive=proc.check_alive
        )
        return proc

    def producer(self) -> Celery:
        app = Celery("tl_producer", broker=self.broker, backend=self.backend or None)
        app.conf.update(
            task_default_queue=self.queue,
            event_exchange=self.exchange,
            task_send_sent_event=True,
        )
        return app

    def ledger(self) -> Ledger:
        return Ledger(self.live.url, self.live.key)

    def runs(self) -> dict[str, Any]:
        """The project's runs by ``run_id`` (all of them, by the API)."""
        with self.ledger() as ledger:
            return {run.run_id: run for run in ledger.runs.iter(page_size=1000)}

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.process.poll() is None:
                proc.process.terminate()
                try:
                    proc.process.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.process.kill()
                    proc.process.wait()
            proc.log.close()
        if self.broker.startswith("amqp"):
            with Connection(self.broker) as conn:
                channel = conn.channel()
                for name in (self.events_queue, self.queue):
                    try:
                        channel.queue_delete(name)
                    except Exception:
                        channel = conn.channel()
        else:
            redis.Redis.from_url(self.broker).flushdb()


def _broker_url(kind: str) -> str:
    if kind == "amqp":
        return AMQP
    return f"{REDIS}/{random.randint(1, COUNTER_DB - 1)}"


@pytest.fixture(params=["amqp", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_kit(kind: str, live: Live, tmp_path: Path, **kw: Any) -> CeleryKit:
    url = _broker_url(kind)
    if not _reachable(url):
        pytest.skip(f"no broker at {url}")
    return CeleryKit(url, live, tmp_path, **kw)


@pytest.fixture
def kit(broker_kind: str, live: Live, tmp_path: Path) -> Iterator[CeleryKit]:
    kit = make_kit(broker_kind, live, tmp_path)
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture
def amqp_kit(live: Live, tmp_path: Path) -> Iterator[CeleryKit]:
    kit = make_kit("amqp", live, tmp_path)
    try:
        yield kit
    finally:
        kit.close()


__all__ = ["DEADLINE", "CeleryKit", "os", "wait_until"]
