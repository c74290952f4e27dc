"""Counters of the Celery collector: dumped on exit, and served on ``--metrics-port``.

They are kept as plain numbers (cheap to count from any thread) and exposed through a
``prometheus_client`` registry of their own, in Prometheus' text format
(``taskledger_collector_<name>``); the same counters are logged as one JSON object when the
collector ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: What each counter counts (the ``# HELP`` line).
HELP = {
    "events_seen": "Celery events received from the broker.",
    "task_events": "Task events among them.",
    "worker_events": "Worker events among them.",
    "events_ignored": "Events of an unknown type or without a task id.",
    "states_recorded": "Task states recorded in the client's buffer (each moved its run).",
    "runs_created": "Runs created.",
    "runs_updated": "Runs moved forward.",
    "runs_unchanged": "States the server already had (replays, another collector).",
    "runs_retried": "Runs brought back to queued by a retry.",
    "runs_reconciled": "Runs finished from the result backend on start.",
    "runs_sent": "Runs the client's buffer sent.",
    "runs_rejected": "Runs the server refused (logged).",
    "batches_spooled": "Batches kept in the spool while the server was unreachable.",
    "spool_batches": "Batches waiting in the spool.",
    "updates_refused": "Retry updates the server refused (logged).",
    "write_errors": "Syncs that found the server and the spool unavailable (retried).",
    "spool_errors": "States that could not be queued in the buffer.",
    "agent_errors": "Agent, connection or heartbeat calls that failed.",
    "heartbeats_sent": "Connection heartbeats sent for workers.",
    "connections_opened": "Connections opened for workers.",
    "connections_closed": "Connections closed for workers.",
    "reconnects": "Broker connections lost and made again.",
    "events_disabled_warnings": "Warnings that workers send no task events.",
    "messages_acked": "Broker messages acknowledged once their runs were written.",
    "lag_seconds": "Seconds from the end of the newest finished task sent to the server taking it.",
    "lag_seconds_max": "The largest lag seen.",
    "pending_states": "Task states not yet on the server or in the spool.",
    "uptime_seconds": "Seconds since the collector started.",
}
#: Values that go up and down; the rest only count up.
GAUGES = frozenset(
    {"lag_seconds", "lag_seconds_max", "pending_states", "spool_batches", "uptime_seconds"}
)


class Counters:
    """Thread-safe counters and gauges, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(HELP, 0)
        self._started = time.monotonic()
        self.last_error: str | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Exposed(self))

    def inc(self, name: str, by: float = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + by

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[name] = value

    def maximum(self, name: str, value: float) -> None:
        """Keep the larger of ``value`` and what ``name`` holds."""
        with self._lock:
            self._values[name] = max(self._values.get(name, 0), value)

    def note_error(self, exc: BaseException) -> None:
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            values: dict[str, Any] = {
                k: (round(v, 3) if isinstance(v, float) else v) for k, v in self._values.items()
            }
        values["uptime_seconds"] = round(time.monotonic() - self._started, 3)
        values["last_error"] = self.last_error
        return values

    def exposition(self) -> str:
        """The counters in Prometheus' text format."""
        return generate_latest(self.registry).decode()


class _Exposed(Collector):
    """The counters as metric families, read at each scrape."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, value in self.counters.snapshot().items():
            if not isinstance(value, int | float):
                continue
            metric = f"taskledger_collector_{name}"
            family = GaugeMetricFamily if name in GAUGES else CounterMetricFamily
            yield family(metric, HELP.get(name, name), value=value)


def serve_metrics(counters: Counters, port: int, host: str = "0.0.0.0") -> Any:  # noqa: S104
    """Serve the counters at ``/metrics`` on ``port`` from a daemon thread; returns the server
    (``shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=host, registry=counters.registry)
    return server
