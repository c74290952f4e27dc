"""SQLite: the write transactions of one process take their turns in the order they arrive.

SQLite keeps no queue for its write lock. A connection that finds it taken sleeps and tries
again, at intervals that grow to 100 ms, so among many waiting writers the ones that have waited
longest poll least often and keep losing to newcomers. With a server's request threads writing
beside a retention run in another process (which holds the lock for a batch at a time, then
pauses for other writers), one request could wait out its whole busy timeout while others got
in, and fail with 503 although the database was never stuck.

So a process's own writers queue first, in arrival order (:class:`WriteQueue`, one per engine),
and only the one at the head waits on SQLite's lock. Against writers of other processes it is
then one writer, which is the case the retention executor's pauses are made for (see
``retention/execute/sqlite_pacing.py``). Read-only transactions (``DEFERRED``) never queue. The
engine takes a turn when a write transaction begins and gives it back when it commits or rolls
back, or when its connection goes back to the pool or is discarded
(:mod:`taskledger.store.engine`).

Between processes, the head of each queue polls for SQLite's lock every millisecond or so
(:func:`begin_polling`) instead of at SQLite's growing intervals. A queue hands its turn on at
once, so a busy server's writers follow one another with hardly a gap; a retention run in
another process, polling every 100 ms once it had waited a while, would almost never land in
one and could wait out its own busy timeout. Polling alike, each process gets its share.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from typing import Any

#: How long SQLite's own busy handler waits within one attempt of :func:`begin_polling`, in ms:
#: it sleeps 1 ms, then 1 ms more, so the lock is polled about every millisecond.
POLL_MS = 2


def begin_polling(raw: Any, mode: str, timeout_ms: int) -> None:
    """``BEGIN <mode>`` on the sqlite3 connection ``raw``, polling for the write lock about every
    millisecond for up to ``timeout_ms``; the connection's busy timeout is put back after.

    Raises:
        sqlite3.OperationalError: The lock stayed taken (``database is locked``), or another
            error of the BEGIN.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    raw.execute(f"PRAGMA busy_timeout = {min(POLL_MS, timeout_ms)}")
    try:
        while True:
            try:
                raw.execute(f"BEGIN {mode}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")


class WriteQueue:
    """A lock handed over first come, first served: a fair mutex with a timeout.

    A turn may be given back by another thread than the one that took it (a connection's
    transaction can end elsewhere than it began).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    @property
    def waiting(self) -> int:
        """How many are waiting for their turn (not counting the holder)."""
        with self._mutex:
            return len(self._waiters)

    @property
    def held(self) -> bool:
        """Whether someone has the turn."""
        with self._mutex:
            return self._held

    def acquire(self, timeout: float) -> bool:
        """Wait for this caller's turn, at most ``timeout`` seconds; ``False`` if it never came."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(max(0.0, timeout)):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ran out: it is ours now
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        """Give the turn to the longest waiting caller, or free it."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of a write turn nobody holds")
            if self._waiters:
                self._waiters.popleft().set()  # held still, by the next in line
            else:
                self._held = False
