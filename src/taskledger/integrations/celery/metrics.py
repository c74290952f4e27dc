"""Counters of the Celery collector: dumped on exit, and served on ``--metrics-port``.

The text is Prometheus' exposition format (``taskledger_collector_<name> <value>``), so the port
can be scraped as it is; the same counters are logged as one JSON object when the collector ends.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What each counter counts (the ``# HELP`` line).
HELP = {
    "events_seen": "Celery events received from the broker.",
    "task_events": "Task events among them.",
    "worker_events": "Worker events among them.",
    "events_ignored": "Events of an unknown type or without a task id.",
    "runs_created": "Runs created.",
    "runs_existing": "Runs found created already (another collector, an earlier start).",
    "runs_updated": "Runs moved forward.",
    "runs_spooled": "Runs queued in the client's spool while the server was unreachable.",
    "runs_refused": "Runs the server refused (logged).",
    "runs_reconciled": "Runs finished from the result backend on start.",
    "updates_refused_terminal": "Updates of a run already final (never moved back).",
    "updates_missing_run": "Updates of a run deleted meanwhile.",
    "updates_refused": "Updates the server refused (logged).",
    "write_errors": "Writes that failed because the server was unavailable (retried).",
    "spool_errors": "Runs that could not be queued in the spool.",
    "agent_errors": "Agent, connection or heartbeat calls that failed.",
    "heartbeats_sent": "Connection heartbeats sent for workers.",
    "connections_opened": "Connections opened for workers.",
    "connections_closed": "Connections closed for workers.",
    "reconnects": "Broker connections lost and made again.",
    "events_disabled_warnings": "Warnings that workers send no task events.",
    "messages_acked": "Broker messages acknowledged after their runs were written.",
    "lag_seconds": "Seconds from the last written event's time to its write.",
    "lag_seconds_max": "The largest lag seen.",
    "pending_states": "Task states waiting to be written.",
    "uptime_seconds": "Seconds since the collector started.",
}


class Counters:
    """Thread-safe counters and gauges, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(HELP, 0)
        self._started = time.monotonic()
        self.last_error: str | None = None

    def inc(self, name: str, by: float = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + by

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[name] = value
            if name == "lag_seconds":
                self._values["lag_seconds_max"] = max(self._values["lag_seconds_max"], value)

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
        lines = []
        for name, value in self.snapshot().items():
            if name == "last_error":
                continue
            metric = f"taskledger_collector_{name}"
            lines.append(f"# HELP {metric} {HELP.get(name, name)}")
            kind = "counter" if not name.startswith(("lag", "pending", "uptime")) else "gauge"
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f"{metric} {value}")
        return "\n".join(lines) + "\n"


def serve_metrics(counters: Counters, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    """Serve ``GET /metrics`` on ``port`` from a daemon thread; returns the server (to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = counters.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="collector-metrics", daemon=True).start()
    return server
