"""Prometheus metrics of one taskledger process (SPEC section 9), on a registry of its own.

Each app (and each test) builds its own :class:`Metrics`, so nothing is global. The API serves it
at ``/metrics``; services and the retention engine receive it and record what they did.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric taskledger exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "taskledger_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "taskledger_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=r,
        )
        self.runs_recorded = Counter(
            "taskledger_runs_recorded", "Runs written through the API or an importer.", registry=r
        )
        self.retention_rows = Counter(
            "taskledger_retention_rows",
            "Rows handled by retention, by rule, table and action "
            "(archived, deleted, scrubbed, expired).",
            ["rule", "table", "action"],
            registry=r,
        )
        self.retention_duration = Histogram(
            "taskledger_retention_duration_seconds",
            "Wall time of retention executions.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=r,
        )
        self.retention_last_success = Gauge(
            "taskledger_retention_last_success_timestamp_seconds",
            "Unix time of the last retention execution that finished successfully.",
            registry=r,
        )
        self.spike_alerts = Counter(
            "taskledger_spike_alerts",
            "Deletion-spike guard trips (deletions refused and alert raised).",
            registry=r,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
