"""Celery workers as taskledger agents: worker-online opens a connection, worker-heartbeat
heartbeats it, worker-offline closes it. Also notices workers that send no task events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskledger.client import Ledger
from taskledger.client.errors import Conflict, LedgerError, NotFound
from taskledger.integrations.celery.metrics import Counters

log = logging.getLogger("taskledger.collect.celery")

AGENT_TYPE = "celery-worker"
#: Heartbeats of one worker are sent on at most this often (Celery beats every 2 s).
HEARTBEAT_EVERY = 10.0
#: How often the "no task events" warning is repeated for a worker that still sends none.
WARN_EVERY = 300.0


@dataclass
class Worker:
    hostname: str
    agent_id: Any = None
    connection_id: int | None = None
    last_beat: float = 0.0
    task_events: int = 0
    processed: int = 0
    baseline: int | None = None
    warned_at: float | None = None


class WorkerTracker:
    """Agents and connections of the workers seen in the events.

    Args:
        ledger: The client (these calls are not buffered: a missed heartbeat is harmless).
        counters: Where failures and warnings are counted.
        on_silent: Called with a hostname when a worker is found sending no task events
            (the collector sends ``enable_events`` from it under ``--enable-events``).
    """

    def __init__(
        self,
        ledger: Ledger,
        counters: Counters,
        on_silent: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.counters = counters
        self.on_silent = on_silent
        self.clock = clock
        self.workers: dict[str, Worker] = {}

    def task_event(self, hostname: Any) -> None:
        """A task event came from ``hostname``: it sends them."""
        if isinstance(hostname, str) and hostname in self.workers:
            self.workers[hostname].task_events += 1

    def observe(self, event: dict[str, Any]) -> None:
        kind, hostname = event.get("type"), event.get("hostname")
        if not isinstance(hostname, str) or not hostname:
            return
        worker = self.workers.setdefault(hostname, Worker(hostname))
        try:
            if kind == "worker-offline":
                self._close(worker, "worker-offline")
                return
            if kind not in ("worker-online", "worker-heartbeat"):
                return
            self._check_events(worker, event)
            now = self.clock()
            if worker.connection_id is None:
                self._open(worker)
                worker.last_beat = now
            elif now - worker.last_beat >= HEARTBEAT_EVERY or kind == "worker-online":
                self._beat(worker)
                worker.last_beat = now
        except LedgerError as exc:
            self.counters.inc("agent_errors")
            self.counters.note_error(exc)
            log.warning("could not record worker %s (%s): %s", hostname, kind, exc)

    # --- agents and connections -------------------------------------------------------------------

    def _agent(self, worker: Worker) -> Any:
        if worker.agent_id is not None:
            return worker.agent_id
        try:
            agent = self.ledger.agents.create(name=worker.hostname, agent_type=AGENT_TYPE)
        except Conflict:
            # Named already: by an earlier start, or another collector.
            for found in self.ledger.agents.iter(agent_type=AGENT_TYPE):
                if found.name == worker.hostname:
                    agent = found
                    break
            else:
                raise
        worker.agent_id = agent.id
        return agent.id

    def _open(self, worker: Worker) -> None:
        agent_id = self._agent(worker)
        for conn in self.ledger.connections.iter(agent_id=agent_id, status="active"):
            worker.connection_id = conn.id  # an earlier start's (or another collector's)
            self._beat(worker)
            return
        worker.connection_id = self.ledger.connections.open(agent_id=agent_id).id
        self.counters.inc("connections_opened")

    def _beat(self, worker: Worker) -> None:
        assert worker.connection_id is not None
        try:
            self.ledger.connections.heartbeat(worker.connection_id)
            self.counters.inc("heartbeats_sent")
        except (Conflict, NotFound):
            # Timed out or closed on the server meanwhile: a new connection.
            worker.connection_id = None
            self._open(worker)

    def _close(self, worker: Worker, reason: str) -> None:
        if worker.connection_id is None:
            if worker.agent_id is None:
                try:
                    self._agent(worker)
                except LedgerError:
                    return
            for conn in self.ledger.connections.iter(agent_id=worker.agent_id, status="active"):
                worker.connection_id = conn.id
                break
        if worker.connection_id is None:
            return
        try:
            self.ledger.connections.close(worker.connection_id, reason)
            self.counters.inc("connections_closed")
        except (Conflict, NotFound):
            pass  # ended already
        worker.connection_id = None

    # --- workers that send no task events ---------------------------------------------------------

    def _check_events(self, worker: Worker, event: dict[str, Any]) -> None:
        processed = event.get("processed")
        if not isinstance(processed, int):
            return
        if worker.baseline is None:
            worker.baseline = processed  # what it ran before this collector was listening
        worker.processed = processed
        if worker.task_events or processed <= worker.baseline:
            return
        now = self.clock()
        if worker.warned_at is not None and now - worker.warned_at < WARN_EVERY:
            return
        worker.warned_at = now
        self.counters.inc("events_disabled_warnings")
        log.warning(
            "worker %s has run %s tasks but sent no task events: its runs are not "
            "recorded. Start it with -E (or set worker_send_task_events = True), or run the "
            "collector with --enable-events",
            worker.hostname,
            worker.processed - (worker.baseline or 0),
            extra={"worker": worker.hostname, "event": "task_events_disabled"},
        )
        if self.on_silent is not None:
            self.on_silent(worker.hostname)
