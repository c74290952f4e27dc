"""Buffered mode: runs queued in memory and sent in ``runs:batch`` requests by a background
thread, at ``flush_at`` runs or every ``flush_interval`` seconds, on ``flush()`` and ``close()``,
and at interpreter exit.

What the server does not take goes to a backlog (the spool on disk, see
:mod:`taskledger.client.spool`, or memory without one), which is replayed oldest first, with
backoff, until the server answers again; while it holds anything, new batches queue behind it,
so the order is kept. The backlog is bounded: once it holds ``spool_max_bytes``, new runs are
refused (``on_full="raise"``, :class:`~taskledger.client.errors.SpoolFull`) or dropped and
counted (``on_full="drop"``). A batch the server refuses item by item (422) is sent again without
the refused items, which are counted as ``rejected`` and logged.

With ``on_existing="advance"`` each batch asks the server to move a run whose key is recorded
already forward to the item, so a caller can record the whole current state of a run each time
it changes (what the Celery collector does). ``on_sent`` is called, in the sender thread and
before the next batch goes, with the items of each batch the server took and its answer.
"""

from __future__ import annotations

import atexit
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from taskledger.client._specs import MAX_BATCH
from taskledger.client.errors import (
    APIStatusError,
    LedgerConnectionError,
    LedgerError,
    RateLimited,
    ServerError,
    SpoolFull,
    ValidationError,
)
from taskledger.client.spool import Backlog, MemoryBacklog
from taskledger.schemas.runs import BatchResult

log = logging.getLogger("taskledger.client")

#: The largest body a batch is given, below the server's 1 MiB request limit.
MAX_BATCH_BYTES = 960 * 1024
OnFull = Literal["raise", "drop"]
OnExisting = Literal["keep", "advance"]
#: Called with the items of a batch the server took and its answer (buffered mode).
OnSent = Callable[[list[dict[str, Any]], BatchResult], None]


@dataclass
class BufferStats:
    """Counters of a buffer since it was made (``backlog_*``: what is waiting now)."""

    recorded: int = 0
    sent: int = 0
    batches_sent: int = 0
    spooled_batches: int = 0
    dropped: int = 0
    rejected: int = 0
    pending: int = 0
    backlog_batches: int = 0
    backlog_bytes: int = 0
    last_error: str | None = None


def _encode(items: list[bytes], project_id: str | None, on_existing: OnExisting) -> bytes:
    head = b'{"project_id": "' + project_id.encode() + b'", ' if project_id else b"{"
    if on_existing != "keep":
        head += b'"on_existing": "' + on_existing.encode() + b'", '
    return head + b'"runs": [' + b", ".join(items) + b"]}"


class RunBuffer:
    """The queue and the sender thread of buffered mode (see the module docstring).

    Args:
        send: Posts one encoded ``runs:batch`` body and returns the answer's body; raises a
            ``LedgerError`` when it fails.
        backlog: Where unsent batches wait: a :class:`~taskledger.client.spool.Spool` or memory.
        project_id: Added to each batch (for clients acting as a user).
        on_existing: The batches' ``on_existing``: ``"keep"`` or ``"advance"``.
        on_sent: Called with each batch taken and its answer (see the module docstring).
    """

    def __init__(
        self,
        send: Callable[[bytes], Any],
        backlog: Backlog | None = None,
        *,
        flush_at: int = 500,
        flush_interval: float = 1.0,
        max_bytes: int = 256 * 2**20,
        on_full: OnFull = "raise",
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        project_id: str | None = None,
        on_existing: OnExisting = "keep",
        on_sent: OnSent | None = None,
    ) -> None:
        if not 1 <= flush_at <= MAX_BATCH:
            raise ValueError(f"flush_at is between 1 and {MAX_BATCH}")
        if on_full not in ("raise", "drop"):
            raise ValueError("on_full is 'raise' or 'drop'")
        if on_existing not in ("keep", "advance"):
            raise ValueError("on_existing is 'keep' or 'advance'")
        self._send = send
        self.backlog: Backlog = backlog if backlog is not None else MemoryBacklog()
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.project_id = project_id
        self.on_existing: OnExisting = on_existing
        self.on_sent = on_sent
        self.stats = BufferStats()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._flush_requested = False
        self._closing = False
        self._busy = False
        self._failures = 0
        self._next_attempt = 0.0
        self._thread = threading.Thread(target=self._loop, name="taskledger-buffer", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        self._atexit = lambda: (buffer := ref()) is not None and buffer.close()
        atexit.register(self._atexit)

    # --- the caller's side ------------------------------------------------------------------------

    def add(self, encoded: bytes) -> None:
        """Queue one run: a validated ``RunCreate`` with its idempotency key, encoded as JSON
        (:func:`~taskledger.client._specs.encode_run`)."""
        if len(encoded) > MAX_BATCH_BYTES:
            raise LedgerError(f"A run of {len(encoded)} bytes cannot be sent in a batch.")
        with self._cond:
            if self._closing:
                raise LedgerError("The buffer is closed.")
            if self.backlog.size + self._pending_bytes >= self.max_bytes:
                if self.on_full == "raise":
                    raise SpoolFull(
                        f"The backlog holds {self.backlog.size:,} bytes of unsent runs "
                        f"(spool_max_bytes={self.max_bytes:,})."
                    )
                self.stats.dropped += 1
                return
            self._pending.append(encoded)
            self._pending_bytes += len(encoded)
            self.stats.recorded += 1
            if len(self._pending) >= self.flush_at or self._pending_bytes >= MAX_BATCH_BYTES:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now, and wait until the backlog is empty too.

        Returns whether everything was delivered within ``timeout`` seconds (``None``: wait as
        long as it takes). What was not stays queued, on disk when there is a spool.
        """
        with self._cond:
            self._next_attempt = 0.0
            return self._wait(
                lambda: bool(
                    self._pending or len(self.backlog) or self._busy or self._flush_requested
                ),
                timeout,
            )

    def persist(self, timeout: float | None = None) -> bool:
        """Wait until every run queued so far is on the server or, with a spool, on disk.

        Unlike :meth:`flush` it does not wait for the server while the spool holds the runs, nor
        retry a server that failed before its backoff is over. Returns whether that was reached
        within ``timeout`` seconds (without a spool: whether everything was delivered).
        """
        with self._cond:
            return self._wait(
                lambda: bool(
                    self._pending or self._busy or (len(self.backlog) and not self.backlog.durable)
                ),
                timeout,
            )

    def _wait(self, busy: Callable[[], bool], timeout: float | None) -> bool:
        """Ask the sender to send now and wait (lock held) while ``busy()``; whether it ended
        within ``timeout`` seconds with the sender alive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flush_requested = True
        self._cond.notify_all()
        while busy():
            if not self._thread.is_alive():
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._cond.wait(timeout=0.1 if left is None else min(left, 0.1))
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the sender thread. With a spool, returns as soon as what could not
        be sent is on disk; without one, after ``timeout`` at most, warning about what is lost."""
        atexit.unregister(self._atexit)
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return not self._pending and not len(self.backlog)
            self._closing = True
            self._flush_requested = True
            self._next_attempt = 0.0
            self._cond.notify_all()
        self._thread.join(timeout)
        delivered = not self._pending and not len(self.backlog)
        if not delivered and not self.backlog.durable:
            log.warning(
                "taskledger: %d runs were never sent and are lost (no spool_dir)",
                len(self._pending) + self.stats.backlog_batches * self.flush_at,
            )
        return delivered

    def snapshot(self) -> BufferStats:
        with self._cond:
            stats = BufferStats(**vars(self.stats))
            stats.pending = len(self._pending)
            stats.backlog_batches = len(self.backlog)
            stats.backlog_bytes = self.backlog.size
            return stats

    # --- the sender thread ------------------------------------------------------------------------

    def _take_batch(self) -> tuple[bytes, int] | None:
        """The next batch from the queue (lock held): up to ``flush_at`` runs and the byte limit."""
        if not self._pending:
            return None
        count, size = 0, 0
        for item in self._pending[: self.flush_at]:
            if count and size + len(item) + 2 > MAX_BATCH_BYTES:
                break
            count, size = count + 1, size + len(item) + 2
        items = self._pending[:count]
        del self._pending[:count]
        self._pending_bytes -= sum(len(i) for i in items)
        return _encode(items, self.project_id, self.on_existing), count

    def _batch_due(self, now: float, last_flush: float) -> bool:
        if not self._pending:
            return False
        return (
            len(self._pending) >= self.flush_at
            or self._pending_bytes >= MAX_BATCH_BYTES
            or self._flush_requested
            or self._closing
            or now - last_flush >= self.flush_interval
        )

    def _loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._batch_due(now, last_flush):
                        break
                    replay = len(self.backlog) and not self._gave_up()
                    if replay and now >= self._next_attempt:
                        break
                    if not self._pending and not replay:
                        self._flush_requested = False
                        self._cond.notify_all()
                        if self._closing:
                            return
                    waits = [self.flush_interval - (now - last_flush)]
                    if replay:
                        waits.append(self._next_attempt - now)
                    self._cond.wait(timeout=min(max(0.01, min(waits)), 1.0))
                batch = self._take_batch()
                if batch is not None:
                    last_flush = time.monotonic()
                self._busy = True
            try:
                if batch is not None:
                    self._deliver_new(*batch)
                else:
                    self._replay()
            except Exception as exc:  # never let the thread die: keep what it holds
                log.exception("taskledger: the buffer's sender failed")
                self.stats.last_error = repr(exc)
                self._failures += 1
                self._next_attempt = time.monotonic() + self.max_backoff
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _gave_up(self) -> bool:
        """Closing, and the server is not answering: a durable backlog can wait for a restart."""
        return self._closing and self._failures > 0 and self.backlog.durable

    def _deliver_new(self, content: bytes, count: int) -> None:
        if len(self.backlog) or time.monotonic() < self._next_attempt:
            self._to_backlog(content)  # behind what is waiting already, to keep the order
            return
        if not self._try(content, count):
            self._to_backlog(content)

    def _to_backlog(self, content: bytes) -> None:
        self.backlog.append(content)
        self.stats.spooled_batches += 1

    def _replay(self) -> None:
        oldest = self.backlog.oldest()
        if oldest is None:
            return
        handle, content = oldest
        if self._try(content, None):
            self.backlog.remove(handle)

    def _try(self, content: bytes, count: int | None) -> bool:
        """Send one batch; whether the server took it (or took all of it it ever will)."""
        try:
            answer = self._send(content)
        except ValidationError as exc:
            return self._without_rejected(content, exc)
        except (LedgerConnectionError, ServerError, RateLimited, APIStatusError) as exc:
            self._failed(exc)
            return False
        self._failures = 0
        self._next_attempt = 0.0
        if count is None:
            count = len(json.loads(content)["runs"])
        self.stats.sent += count
        self.stats.batches_sent += 1
        if self.on_sent is not None:
            self._report(content, answer)
        return True

    def _report(self, content: bytes, answer: Any) -> None:
        assert self.on_sent is not None
        try:
            self.on_sent(json.loads(content)["runs"], BatchResult.model_validate_json(answer))
        except Exception:  # the caller's hook: never let it stop the sending
            log.exception("taskledger: the buffer's on_sent hook failed")

    def _failed(self, exc: LedgerError) -> None:
        self._failures += 1
        self.stats.last_error = str(exc)
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(self._failures - 1, 30))
        delay = ceiling * (0.5 + random.random() / 2)  # jitter
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), 60.0))
        self._next_attempt = time.monotonic() + delay
        if self._failures == 1:
            log.warning("taskledger: cannot send runs (%s); keeping them to send later", exc)

    def _without_rejected(self, content: bytes, exc: ValidationError) -> bool:
        """Drop the items the server refused (a 422 names them) and send the rest."""
        bad = {
            e["loc"][2]
            for e in exc.errors
            if len(e.get("loc", [])) > 2 and e["loc"][:2] == ["body", "runs"]
        }
        body = json.loads(content)
        runs = body["runs"]
        if not bad or not all(isinstance(i, int) and 0 <= i < len(runs) for i in bad):
            bad = set(range(len(runs)))  # the batch as a whole is refused: nothing can pass
        log.error("taskledger: the server refused %d runs of a batch: %s", len(bad), exc)
        self.stats.rejected += len(bad)
        body["runs"] = [r for i, r in enumerate(runs) if i not in bad]
        if not body["runs"]:
            return True
        return self._try(json.dumps(body).encode(), len(body["runs"]))
