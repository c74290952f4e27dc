"""The broker side of the Celery collector: the events queue, the consume loop with reconnects
that back off, acknowledgements after the writes, and the reconcile from a result backend.

On RabbitMQ (AMQP) the collector consumes from a named, durable, non-auto-delete queue bound to
the events exchange, expiring after ``queue_expires`` seconds without a consumer, and
acknowledges a message only once the runs of its events are on the server: a collector that
dies (even by SIGKILL) and starts again within the expiry loses no event, the unacknowledged
ones are delivered again. On Redis events are pub/sub messages that the broker keeps for no
one; what a collector misses while it is down is recovered, for runs it had seen, from the
result backend on start (``result_backend``).

Celery and kombu are imported here only: ``taskledger --help`` never loads them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.events.event import get_exchange
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message
from kombu.messaging import Consumer

from taskledger.client import Ledger
from taskledger.client.buffer import OnSent
from taskledger.client.errors import LedgerConnectionError, RateLimited, ServerError
from taskledger.integrations.celery.mapping import (
    CANCELLED,
    COMPLETED,
    FAILED,
    TASK_EVENTS,
    MappingOptions,
    TaskState,
    event_time,
    task_run_key,
)
from taskledger.integrations.celery.metrics import Counters
from taskledger.integrations.celery.workers import WorkerTracker
from taskledger.integrations.celery.writer import RunWriter

log = logging.getLogger("taskledger.collect.celery")

#: Result-backend states and the run status each ends in.
FINAL_STATES = {"SUCCESS": COMPLETED, "FAILURE": FAILED, "REVOKED": CANCELLED}


@dataclass
class CollectorConfig:
    """How the collector reaches the broker and what it sends.

    Args:
        broker: The Celery broker URL (``amqp://...``, ``redis://...``).
        queue_name: The events queue on AMQP brokers; collectors sharing it share the work.
        queue_expires: Seconds an unconsumed AMQP events queue survives.
        exchange: The events exchange (Celery's ``event_exchange``).
        enable_events: Send ``enable_events`` to the workers on start and to any found silent.
        result_backend: Reconcile unfinished runs from this result backend on start.
        batch: Write (and acknowledge) after this many events at most...
        interval: ...or this many seconds after the first one waiting.
        prefetch: Unacknowledged AMQP messages held at most.
        options: What goes into ``inputs``.
    """

    broker: str
    queue_name: str = "taskledger-celery-events"
    queue_expires: float = 86400.0
    exchange: str = "celeryev"
    enable_events: bool = False
    result_backend: str | None = None
    batch: int = 500
    interval: float = 0.5
    prefetch: int = 2000
    max_backoff: float = 30.0
    options: MappingOptions = field(default_factory=MappingOptions)


def collector_ledger(
    url: str,
    api_key: str,
    project_id: str,
    spool_dir: str | None,
    interval: float,
    batch: int,
) -> Callable[[OnSent], Ledger]:
    """How the collector makes its client: buffered, advancing runs, spooled in ``spool_dir``
    (in memory when ``None``), sending every ``interval`` seconds or ``batch`` states."""

    def connect(on_sent: OnSent) -> Ledger:
        return Ledger(
            url,
            api_key,
            project_id=project_id,
            buffer=True,
            spool_dir=spool_dir,
            flush_at=batch,
            flush_interval=interval,
            on_existing="advance",
            on_sent=on_sent,
        )

    return connect


def events_queue(conn: Connection, config: CollectorConfig, *, shared: bool) -> Queue:
    """The queue the collector consumes: on AMQP (``shared``) the named, durable one that
    outlives a restart by ``queue_expires``; on pub/sub brokers one of this process alone,
    gone with it (nothing is kept for it anyway)."""
    exchange = get_exchange(conn, name=config.exchange)
    if shared:
        return Queue(
            config.queue_name,
            exchange=exchange,
            routing_key="#",
            durable=True,
            auto_delete=False,
            expires=config.queue_expires,
        )
    return Queue(
        f"{config.queue_name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}",
        exchange=exchange,
        routing_key="#",
        durable=False,
        auto_delete=True,
    )


class Collector:
    """Consumes Celery events into runs and agents until :meth:`stop` is called.

    Args:
        config: The broker side.
        connect: Makes the client the runs and agents are written through, given the hook
            that sees each batch's answer (:func:`collector_ledger`).
        counters: Counters to fill (a new set when omitted).
    """

    def __init__(
        self,
        config: CollectorConfig,
        connect: Callable[[OnSent], Ledger],
        counters: Counters | None = None,
    ) -> None:
        self.config = config
        self.counters = counters or Counters()
        self.writer: RunWriter
        ledger = connect(lambda items, answer: self.writer.on_sent(items, answer))
        self.ledger = ledger
        self.writer = RunWriter(ledger, config.options, self.counters)
        self.workers = WorkerTracker(ledger, self.counters, on_silent=self._silent_worker)
        self.app = Celery(
            "taskledger-collector", broker=config.broker, backend=config.result_backend
        )
        self.app.conf.event_exchange = config.exchange
        self._stop = threading.Event()
        self._unacked: list[Message] = []
        self._first_waiting: float | None = None
        self._newest_event: float | None = None
        self._last_enable = 0.0
        self._acking = False

    def stop(self) -> None:
        """Ask the loop to end; it writes what it holds and returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until stopped, reconnecting with exponential backoff when the broker goes."""
        if self.config.result_backend:
            try:
                self.reconcile()
            except (LedgerConnectionError, ServerError, RateLimited) as exc:
                self.counters.note_error(exc)
                log.warning("could not reconcile from the result backend: %s", exc)
        failures = 0
        errors: tuple[type[BaseException], ...] = (OSError, *self._connection_errors())
        while not self.stopping:
            try:
                with Connection(self.config.broker) as conn:
                    conn.ensure_connection(max_retries=1)
                    failures = 0
                    self._consume(conn, on_ready)
                    on_ready = None
            except errors as exc:
                failures += 1
                self.counters.inc("reconnects")
                self.counters.note_error(exc)
                delay = min(self.config.max_backoff, 0.5 * 2 ** min(failures - 1, 10))
                log.warning("the broker is unavailable (%s); trying again in %.1fs", exc, delay)
                self._unacked.clear()  # the broker delivers them again
                self._stop.wait(delay)
        self._commit(final=True)

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = Connection(self.config.broker)
        try:
            return tuple(conn.connection_errors) + tuple(conn.channel_errors)
        finally:
            conn.release()

    def _is_amqp(self, conn: Connection) -> bool:
        return bool(conn.transport.driver_type == "amqp")

    def _consume(self, conn: Connection, on_ready: Callable[[], None] | None) -> None:
        amqp = self._acking = self._is_amqp(conn)
        queue = events_queue(conn, self.config, shared=amqp)
        consumer = Consumer(
            conn.default_channel,
            queues=[queue],
            callbacks=[self._on_message],
            no_ack=not amqp,
            accept=["json"],
        )
        if amqp:
            consumer.qos(prefetch_count=min(self.config.prefetch, 65535))
        with consumer:
            log.info(
                "consuming Celery events from %s (%s)",
                conn.as_uri(),
                f"queue {self.config.queue_name}" if amqp else "pub/sub",
                extra={"event": "consuming"},
            )
            if self.config.enable_events:
                self._enable_events(force=True)
            if on_ready is not None:
                on_ready()
            while not self.stopping:
                try:
                    conn.drain_events(timeout=min(0.25, self.config.interval))
                except TimeoutError:
                    pass
                except socket.timeout:  # noqa: UP041 - older kombu transports raise this name
                    pass
                if self._due():
                    self._commit()
            self._commit(final=True)

    def _on_message(self, body: Any, message: Message) -> None:
        events = body if isinstance(body, list) else [body]
        for event in events:
            if isinstance(event, dict):
                self.handle(event)
        if self._acking:
            self._unacked.append(message)
        if self._first_waiting is None:
            self._first_waiting = time.monotonic()

    def handle(self, event: dict[str, Any]) -> None:
        """One Celery event (a dict with ``type``)."""
        self.counters.inc("events_seen")
        kind = str(event.get("type", ""))
        stamp = event.get("timestamp")
        if isinstance(stamp, int | float):
            self._newest_event = float(stamp)
        if kind in TASK_EVENTS:
            self.counters.inc("task_events")
            self.workers.task_event(event.get("hostname"))
            self.writer.observe(event)
        elif kind.startswith("worker-"):
            self.counters.inc("worker_events")
            self.workers.observe(event)
        else:
            self.counters.inc("events_ignored")

    def _due(self) -> bool:
        if self._first_waiting is None:
            return False
        waited = time.monotonic() - self._first_waiting
        return self.writer.pending >= self.config.batch or waited >= self.config.interval

    def _commit(self, final: bool = False) -> bool:
        """Write what moved; acknowledge the messages it came from once it is all written."""
        written = self.writer.sync()
        self.counters.set("pending_states", self.writer.pending)
        stats = self.ledger.buffer_stats()
        self.counters.set("runs_sent", stats.sent)
        self.counters.set("runs_rejected", stats.rejected)
        self.counters.set("batches_spooled", stats.spooled_batches)
        self.counters.set("spool_batches", stats.backlog_batches)
        if not written:
            if final:
                log.warning("%d task states could not be written", self.writer.pending)
            self._first_waiting = time.monotonic()  # try again an interval later
            return False
        if self._newest_event is not None:
            self.counters.set("lag_seconds", max(0.0, time.time() - self._newest_event))
        if self._unacked:
            last = self._unacked[-1]
            try:
                last.ack(multiple=True)
                self.counters.inc("messages_acked", len(self._unacked))
            except Exception as exc:  # the connection went: they are delivered again
                self.counters.note_error(exc)
                log.warning("could not acknowledge %d messages: %s", len(self._unacked), exc)
            self._unacked.clear()
        self._first_waiting = None
        return True

    # --- events that are not sent -----------------------------------------------------------------

    def _silent_worker(self, hostname: str) -> None:
        if self.config.enable_events:
            self._enable_events(destination=[hostname])

    def _enable_events(self, force: bool = False, destination: list[str] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_enable < 5.0:
            return
        self._last_enable = now
        try:
            self.app.control.enable_events(destination=destination)
            log.info(
                "sent enable_events to %s", ", ".join(destination) if destination else "all workers"
            )
        except Exception as exc:
            self.counters.note_error(exc)
            log.warning("could not send enable_events: %s", exc)

    # --- the result backend -----------------------------------------------------------------------

    def reconcile(self) -> int:
        """For every run of this collector still queued or running, read its task's state from
        the result backend and record the final state found there; returns how many."""
        done = 0
        for run_id in self.writer.unfinished():
            result = self.app.AsyncResult(run_id)
            try:
                state = result.state
            except Exception as exc:
                self.counters.note_error(exc)
                log.warning("could not read task %s from the result backend: %s", run_id, exc)
                continue
            status = FINAL_STATES.get(state)
            if status is None:
                continue
            task = TaskState(run_id, status=status, rank=(1, 0, 9))
            date_done = getattr(result, "date_done", None)
            if isinstance(date_done, datetime):
                task.finished_at = date_done if date_done.tzinfo else date_done.replace(tzinfo=UTC)
            if status == FAILED:
                task.log = str(result.traceback or result.result or "")[-16000:] or None
            self.writer.put(task)
            done += 1
        if done:
            self.writer.sync()
            self.counters.inc("runs_reconciled", done)
            log.info("reconciled %d runs from the result backend", done)
        return done


__all__ = ["Collector", "CollectorConfig", "event_time", "task_run_key"]
