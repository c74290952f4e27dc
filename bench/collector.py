"""Celery collector (SPEC section 10): events per second sustained, end-to-end lag (p50/p99) and
the collector's peak memory at N and 4N tasks through a real worker, on RabbitMQ.

A real ``taskledger serve`` and a real Celery worker (threads pool) run on 127.0.0.1, the worker
sending task events to an exchange of this run; tasks do nothing, so the events are what is
measured. ``taskledger collect celery`` runs as its own process, as in production, with a spool.

- **Sustained rate.** With the collector stopped, N tasks go through the worker and their events
  (received, started, succeeded) wait in the collector's named events queue. The clock starts
  when the collector is ready and stops when the database holds every run completed. The
  baseline drains the same number of events from the same queue with a bare kombu consumer that
  decodes and acknowledges them and writes nothing: the rate of reading the events at all.
- **Memory.** The same drain with 4N tasks; the collector's peak resident set (``VmHWM``) at 4N
  is compared with the one at N, and the growth above its size when ready is shown.
- **Lag.** With the collector running, N tasks are published; for each run, the time from the
  task's end (the worker's ``task-succeeded`` timestamp, its ``finished_at``) to the moment the
  server wrote its final state (``updated_at``, ``created_at`` when created final), p50 and p99.
  The worker, the server and the collector share this machine's clock.

``--rows`` is N, the number of tasks (default 20,000); RabbitMQ is at ``TASKLEDGER_BENCH_AMQP``
(default ``amqp://guest:guest@127.0.0.1:5672//``), and the benchmark is skipped without one.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from celery import Celery
from kombu import Connection, Consumer
from sqlalchemy import Engine, func, select

from benchlib import (
    Target,
    arguments,
    backends,
    console,
    fresh_database,
    mib,
    new_api_key,
    new_project,
    print_table,
    serve,
    times,
)
from taskledger.enums import Scope
from taskledger.integrations.celery.collector import CollectorConfig, events_queue
from taskledger.store import make_session_factory
from taskledger.store.models import Run

BROKER = os.environ.get("TASKLEDGER_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
HERE = Path(__file__).resolve().parent
#: The longest wait for one phase (a bound for a machine that stalls, not a target).
PHASE_DEADLINE = 1800.0
MEMORY = Target(1.25)


def wait_for(condition: Callable[[], bool], what: str, deadline: float = PHASE_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Rig:
    """This run's worker, queues, collector and server."""

    def __init__(self, engine: Engine, url: str, project_id: uuid.UUID, key: str) -> None:
        self.engine = engine
        self.url = url
        self.project_id = project_id
        self.key = key
        self.uid = uuid.uuid4().hex[:8]
        self.tmp = Path(tempfile.mkdtemp(prefix="taskledger-bench-celery-"))
        self.config = CollectorConfig(
            broker=BROKER,
            queue_name=f"tl-bench-events-{self.uid}",
            exchange=f"celeryev.bench-{self.uid}",
        )
        self.task_queue = f"tl-bench-tasks-{self.uid}"
        self.conn = Connection(BROKER)
        self.queue = events_queue(self.conn, self.config, shared=True)(self.conn.default_channel)
        self.queue.declare()  # events are kept for the collector from now on
        self.producer_app = Celery("tl_bench_producer", broker=BROKER)
        self.producer_app.conf.update(
            task_default_queue=self.task_queue, event_exchange=self.config.exchange
        )
        self.worker = self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "_celery_app",
                "worker",
                "--pool=threads",
                "--concurrency=4",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",  # no heartbeat events: the queue settles when tasks end
                "-n",
                f"bench-{self.uid}@tl",
                "-Q",
                self.task_queue,
                "-l",
                "INFO",
            ],
            TL_BROKER=BROKER,
            TL_QUEUE=self.task_queue,
            TL_EXCHANGE=self.config.exchange,
            PYTHONPATH=str(HERE),
        )
        wait_for(lambda: " ready." in self._read(self.worker), "the worker", 120)
        self.published = 0

    def _spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{name}.log", "w+", encoding="utf-8")  # noqa: SIM115
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        process.log = log  # type: ignore[attr-defined]
        return process

    @staticmethod
    def _read(process: subprocess.Popen[str]) -> str:
        log: IO[str] = process.log  # type: ignore[attr-defined]
        log.flush()
        log.seek(0)
        return log.read()

    # --- tasks and events -------------------------------------------------------------------------

    def publish(self, n: int) -> None:
        with self.producer_app.producer_or_acquire() as producer:
            for i in range(n):
                self.producer_app.send_task("bench.noop", args=[i], producer=producer)
        self.published += n

    def queued_messages(self) -> int:
        _, count, _ = self.queue.queue_declare(passive=True)
        return int(count)

    def events_settled(self) -> None:
        """Wait until the worker has sent the events of every task published: it sends them in
        groups, so a message holds several, and the count of messages is what can be watched.
        Settled means no event message came for 2 seconds."""
        last, since = -1, time.monotonic()
        end = time.monotonic() + PHASE_DEADLINE
        while True:
            now, count = time.monotonic(), self.queued_messages()
            if count != last:
                last, since = count, now
            elif count and now - since >= 2.0:
                return
            if now > end:
                raise RuntimeError("the worker did not finish the tasks in time")
            time.sleep(0.1)

    def completed_runs(self) -> int:
        with make_session_factory(self.engine, read_only=True)() as session:
            query = select(func.count()).where(
                Run.project_id == self.project_id, Run.status == "completed"
            )
            return int(session.scalar(query) or 0)

    def raw_drain(self) -> tuple[float, int]:
        """A bare consumer reads (decodes, acknowledges) every event waiting: (seconds to the
        last one, task events seen)."""
        seen = [0]
        last: list[Any] = [None]
        done = [0.0]

        def on_message(body: Any, message: Any) -> None:
            for event in body if isinstance(body, list) else [body]:
                if isinstance(event, dict) and str(event.get("type", "")).startswith("task-"):
                    seen[0] += 1
            last[0] = message
            done[0] = time.perf_counter()
            if seen[0] % 500 == 0:
                message.ack(multiple=True)

        with Connection(BROKER) as conn:
            queue = events_queue(conn, self.config, shared=True)
            consumer = Consumer(
                conn.default_channel, queues=[queue], callbacks=[on_message], accept=["json"]
            )
            consumer.qos(prefetch_count=self.config.prefetch)
            with consumer:
                started = time.perf_counter()
                while True:
                    try:
                        conn.drain_events(timeout=2.0)
                    except TimeoutError:
                        break  # the queue is empty
                if last[0] is not None and not last[0].acknowledged:
                    last[0].ack(multiple=True)
        return done[0] - started, seen[0]

    # --- the collector ----------------------------------------------------------------------------

    def start_collector(self) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "taskledger", "collect", "celery", "--json"]
        command += ["--broker", BROKER, "--project", str(self.project_id)]
        command += ["--url", self.url, "--api-key", self.key]
        command += ["--exchange", self.config.exchange, "--queue-name", self.config.queue_name]
        command += ["--spool-dir", str(self.tmp / "spool")]
        process = self._spawn("collector", command)
        wait_for(lambda: '"ready"' in self._read(process), "the collector", 120)
        return process

    def stop_collector(self, process: subprocess.Popen[str]) -> dict[str, Any]:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        lines = [line for line in self._read(process).splitlines() if '"counters"' in line]
        counters: dict[str, Any] = json.loads(lines[-1])["counters"]
        return counters

    @staticmethod
    def memory(process: subprocess.Popen[str]) -> tuple[int, int]:
        """(resident now, peak resident) of ``process``, in bytes."""
        fields = {}
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
        return fields["VmRSS"], fields["VmHWM"]

    def drain(self, n: int) -> tuple[float, int, int]:
        """N tasks through the worker with the collector stopped, then the collector drains
        them: (seconds, peak resident, resident when ready)."""
        before = self.completed_runs()
        self.publish(n)
        self.events_settled()
        process = self.start_collector()
        ready_rss, _ = self.memory(process)
        started = time.perf_counter()
        wait_for(lambda: self.completed_runs() >= before + n, "the runs")
        elapsed = time.perf_counter() - started
        _, peak = self.memory(process)
        self.stop_collector(process)
        return elapsed, peak, ready_rss

    def live(self, n: int) -> tuple[float, list[float], dict[str, Any]]:
        """N tasks published with the collector running: (seconds, lag of each run, counters)."""
        process = self.start_collector()
        since = datetime.now().astimezone()
        before = self.completed_runs()
        started = time.perf_counter()
        self.publish(n)
        wait_for(lambda: self.completed_runs() >= before + n, "the runs")
        elapsed = time.perf_counter() - started
        counters = self.stop_collector(process)
        with make_session_factory(self.engine, read_only=True)() as session:
            rows = session.execute(
                select(Run.finished_at, Run.created_at, Run.updated_at).where(
                    Run.project_id == self.project_id, Run.created_at >= since
                )
            ).all()
        lags = [
            max(0.0, (max(created, updated) - finished).total_seconds())
            for finished, created, updated in rows
            if finished is not None
        ]
        return elapsed, lags, counters

    def close(self) -> None:
        self.worker.terminate()
        try:
            self.worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.worker.kill()
        try:
            self.queue.delete()
        finally:
            self.conn.release()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(backend: str, n: int) -> None:
    with fresh_database(backend) as engine:
        project_id = new_project(engine)
        key = new_api_key(engine, project_id, Scope.READ, Scope.WRITE)
        with serve(engine) as url:
            rig = Rig(engine, url, project_id, key)
            try:
                console.print(f"  {backend}: raw drain of {n:,} tasks' events", style="dim")
                rig.publish(n)
                rig.events_settled()
                raw, events = rig.raw_drain()
                console.print(f"  {backend}: collector drains of {n:,} and {4 * n:,}", style="dim")
                small, small_peak, small_ready = rig.drain(n)
                large, large_peak, large_ready = rig.drain(4 * n)
                console.print(f"  {backend}: live stream of {n:,} tasks", style="dim")
                live, lags, counters = rig.live(n)
            finally:
                rig.close()
    rate, raw_rate = events / small, events / raw
    print_table(
        f"Celery collector, {backend}: events from the queue to runs",
        ["measure", "collector", "bare consumer", "ratio"],
        [
            [
                f"drain {n:,} tasks ({events:,} events)",
                f"{rate:,.0f} ev/s",
                f"{raw_rate:,.0f} ev/s",
                times(rate / raw_rate),
            ],
            [f"drain {4 * n:,} tasks", f"{4 * events / large:,.0f} ev/s", "", ""],
            ["task events per task", f"{events / n:.1f}", "", ""],
            [
                f"live {n:,} tasks (the worker's pace)",
                f"{counters['events_seen'] / live:,.0f} ev/s",
                "",
                "",
            ],
        ],
    )
    print_table(
        f"Celery collector, {backend}: lag and memory",
        ["measure", "value", "", "verdict"],
        [
            ["lag p50 (task end to run final)", f"{percentile(lags, 0.5) * 1000:,.0f} ms", "", ""],
            ["lag p99", f"{percentile(lags, 0.99) * 1000:,.0f} ms", "", ""],
            ["lag mean", f"{statistics.fmean(lags) * 1000:,.0f} ms", f"{len(lags):,} runs", ""],
            [
                f"peak RSS at {n:,} / {4 * n:,} tasks",
                f"{mib(small_peak)} / {mib(large_peak)}",
                times(large_peak / small_peak),
                MEMORY.verdict(large_peak / small_peak),
            ],
            [
                "growth above ready",
                f"{mib(small_peak - small_ready)} / {mib(large_peak - large_ready)}",
                "",
                "",
            ],
        ],
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=20_000)
    try:
        with Connection(BROKER, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        console.print(f"[yellow]skipped:[/] no RabbitMQ at {BROKER} ({exc})")
        return
    for backend in backends(args.backend):
        measure(backend, args.rows)


if __name__ == "__main__":
    main()
