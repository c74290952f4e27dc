"""Alerts for operators: a WARNING log line, a Prometheus counter, and a JSON POST to a webhook.

The POST happens on a background thread with a timeout and retries, never on the request path.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskledger.metrics import Metrics

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 5.0
WEBHOOK_ATTEMPTS = 3


class Alerter:
    """Raises alerts; one per process, shared by the spike guard and anything else that alerts."""

    def __init__(self, *, webhook_url: str | None, metrics: Metrics | None) -> None:
        self.webhook_url = webhook_url
        self.metrics = metrics
        self._pool: ThreadPoolExecutor | None = None

    def spike(self, payload: dict[str, Any]) -> Future[bool] | None:
        """Report a deletion spike: a delete refused by the window (``refused``), or a prune
        that took it over the limit. Returns the webhook delivery, when there is one."""
        if payload.get("refused", True):
            log.warning(
                "deletion spike: %s rows within %ss (limit %s); deletes refused until it drains",
                payload.get("rows_in_window"),
                payload.get("window_seconds"),
                payload.get("max_rows"),
                extra={"alert": "deletion_spike"},
            )
        else:
            log.warning(
                "deletion spike: a prune of %s rows by %s took the window to %s rows within %ss "
                "(limit %s); API deletes refused until it drains",
                payload.get("rows_requested"),
                payload.get("actor"),
                int(payload.get("rows_in_window") or 0) + int(payload.get("rows_requested") or 0),
                payload.get("window_seconds"),
                payload.get("max_rows"),
                extra={"alert": "deletion_spike"},
            )
        if self.metrics is not None:
            self.metrics.spike_alerts.inc()
        if not self.webhook_url:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskledger-alert")
        return self._pool.submit(self._post, {"alert": "deletion_spike", **payload})

    def _post(self, body: dict[str, Any]) -> bool:
        import httpx  # only when an alert is sent: the CLI commands that guard need not load it

        assert self.webhook_url is not None
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                with httpx.Client(timeout=WEBHOOK_TIMEOUT) as client:
                    response = client.post(self.webhook_url, json=body)
                if response.status_code < 500:
                    if response.status_code >= 400:
                        log.error("alert webhook refused the alert: %s", response.status_code)
                    return response.status_code < 400
            except httpx.HTTPError as exc:
                log.warning("alert webhook attempt %d failed: %s", attempt, exc)
            time.sleep(0.5 * 2 ** (attempt - 1))
        log.error("alert webhook unreachable after %d attempts", WEBHOOK_ATTEMPTS)
        return False

    def close(self) -> None:
        """Wait for pending deliveries (bounded by their timeouts) and stop the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
