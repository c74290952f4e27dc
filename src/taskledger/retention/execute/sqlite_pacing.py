"""SQLite: what the executor does between two batches, so that other writers get their turn.

SQLite has one write lock and no queue for it. After each batch the run pauses, as long as
:func:`pause_for` decides and no longer than it takes another connection to commit, and a thread
of its own checkpoints the WAL. Tuning the pauses happens here; the batch loop
(:mod:`taskledger.retention.execute.executor`) only calls :meth:`BetweenBatches.batch_done`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Connection

from taskledger.store.engine import is_sqlite

#: SQLite: while other connections are committing, the pause after each batch, as a share of the
#: batch's time, so that they get the write lock in between (it ends as soon as one has committed).
SQLITE_YIELD = 0.25
#: SQLite: when no other connection has committed for this long (seconds), though one did
#: within :data:`SQLITE_WRITERS_GONE`, a writer may be waiting at SQLite's slowest poll rate...
SQLITE_STARVED_AFTER = 0.1
SQLITE_WRITERS_GONE = 5.0
#: ...and the pause lasts up to this long: more than the 100 ms between its polls.
SQLITE_LONG_PAUSE = 0.12
#: SQLite: a long pause this often (seconds) even when no writer has been seen, for a writer
#: that began waiting before it could commit once (see :func:`pause_for`).
SQLITE_WINDOW_EVERY = 0.25
#: SQLite: how long the run waits for its checkpoint thread to begin, at most (seconds).
SQLITE_CHECKPOINT_START_WAIT = 0.05
#: SQLite: how often a pause looks for another connection's commit.
SQLITE_POLL = 0.001


class BetweenBatches:
    """SQLite: what happens between two batches, outside any transaction.

    **Other writers get their turn.** SQLite has no queue for its write lock: a writer waiting
    on it polls, at growing intervals that reach 100 ms once it has waited a while, so batches
    run back to back would starve it. Every pause ends early once another connection has
    committed (``PRAGMA data_version`` changes): that writer got its turn. See :func:`pause_for`
    for how long a pause may last.

    **The WAL is checkpointed by a thread** of its own, on its own connection, after every
    batch: each batch rewrites the index pages its rows are spread over (``run_id`` is random,
    so nearly every page of that index), and left in the WAL those pages would be copied back by
    whichever connection's commit next runs SQLite's automatic checkpoint: another writer's,
    which would wait for it. The checkpoint is PASSIVE (it blocks no writer) and runs while the
    next batch does. The run's own connection does not checkpoint automatically; its setting is
    put back at the end.
    """

    def __init__(self, conn: Connection) -> None:
        # PRAGMAs go through the DBAPI connection: SQLAlchemy would begin a transaction first.
        self.raw: Any = conn.connection.driver_connection if is_sqlite(conn) else None
        self.previous = 0
        self.version = 0
        self.other_commit_at: float | None = None
        self.window_at = time.monotonic()
        self.checkpointer: _Checkpointer | None = None

    def __enter__(self) -> BetweenBatches:
        if self.raw is not None:
            self.previous = int(self.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            self.raw.execute("PRAGMA wal_autocheckpoint = 0")
            self.version = self._data_version()
            path = self.raw.execute("PRAGMA database_list").fetchone()[2]
            if path:  # not for an in-memory database
                self.checkpointer = _Checkpointer(path)
        return self

    def _data_version(self) -> int:
        return int(self.raw.execute("PRAGMA data_version").fetchone()[0])

    def _others_committed(self) -> bool:
        version = self._data_version()
        if version == self.version:
            return False
        self.version = version
        self.other_commit_at = time.monotonic()
        return True

    def batch_done(self, seconds: float) -> None:
        """Pause after a batch that took ``seconds`` (see :func:`pause_for`)."""
        if self.raw is None:
            return
        self._others_committed()
        pause = pause_for(
            time.monotonic(),
            seconds,
            other_commit_at=self.other_commit_at,
            window_at=self.window_at,
        )
        if self.checkpointer is not None:
            # Before a pause, the checkpoint must have begun: see the class's docstring.
            self.checkpointer.wake(wait=pause > 0)
        deadline = time.monotonic() + pause
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, SQLITE_POLL))
            if self._others_committed():
                break
        if pause >= SQLITE_LONG_PAUSE:
            self.window_at = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        if self.raw is not None:
            if self.checkpointer is not None:
                self.checkpointer.close()
            self.raw.execute(f"PRAGMA wal_autocheckpoint = {self.previous}")
            self.raw.execute("PRAGMA wal_checkpoint(PASSIVE)")


def pause_for(
    now: float, batch_seconds: float, *, other_commit_at: float | None, window_at: float
) -> float:
    """SQLite: how long the pause after a batch may last (seconds; it ends early once another
    connection has committed). ``other_commit_at`` is when another connection was last seen to
    commit (``None``: never during this run), ``window_at`` when the last long pause ended (or
    the run began).

    - Another connection committed within :data:`SQLITE_STARVED_AFTER`: writers are active, and
      :data:`SQLITE_YIELD` of the batch's time lets the next one in.
    - One did within :data:`SQLITE_WRITERS_GONE`, but not since: it may be waiting at SQLite's
      slowest poll rate, every 100 ms, so the pause is :data:`SQLITE_LONG_PAUSE`, long enough for
      any poll to land in it.
    - No writer seen (or none within :data:`SQLITE_WRITERS_GONE`): no pause, but a long one
      whenever the next batch, if as long as this one, would end :data:`SQLITE_WINDOW_EVERY`
      or more after the last long pause, for a writer that has been waiting since before it
      could commit once. Such a writer waits at most about that, the wait for the checkpoint
      to begin (:data:`SQLITE_CHECKPOINT_START_WAIT`) and its last poll interval (100 ms).
    """
    quiet = None if other_commit_at is None else now - other_commit_at
    if quiet is not None and quiet < SQLITE_STARVED_AFTER:
        return batch_seconds * SQLITE_YIELD
    if quiet is not None and quiet < SQLITE_WRITERS_GONE:
        return SQLITE_LONG_PAUSE
    if now + batch_seconds - window_at >= SQLITE_WINDOW_EVERY:
        return SQLITE_LONG_PAUSE
    return 0.0


class _Checkpointer:
    """A thread running a PASSIVE WAL checkpoint of one SQLite file each time it is woken.

    :meth:`wake` returns once the checkpoint has begun (or when one is still running): from then
    on it holds SQLite's checkpoint lock, so that a writer committing in the pause that follows
    finds the checkpoint taken care of, instead of running it inside its own commit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.woken = threading.Event()
        self.started = threading.Event()
        self.busy = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="taskledger-checkpoint", daemon=True)
        self.thread.start()

    def wake(self, *, wait: bool = True) -> None:
        if not self.thread.is_alive():
            return  # it could not open the database; the checkpoint at the end of the run remains
        if self.busy:
            self.woken.set()  # it runs again once the current one is done
            return
        self.started.clear()
        self.woken.set()
        if wait:
            self.started.wait(SQLITE_CHECKPOINT_START_WAIT)

    def _run(self) -> None:
        # Checkpoints never wait: a busy checkpoint is simply retried after the next batch.
        try:
            connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        except sqlite3.Error:
            return  # the run goes on; its checkpoint at the end remains
        try:
            while True:
                self.woken.wait()
                self.woken.clear()
                if self.stopping:
                    return
                self.busy = True
                self.started.set()
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.busy = False
        finally:
            connection.close()

    def close(self) -> None:
        self.stopping = True
        self.woken.set()
        self.thread.join()
