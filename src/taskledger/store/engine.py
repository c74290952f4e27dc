"""Engine and session factory: one place that knows how to connect to SQLite or PostgreSQL.

SQLite connections run in WAL mode with foreign keys on and a busy timeout. pysqlite's own
transaction handling is switched off so that SQLAlchemy emits ``BEGIN`` itself: this makes
SAVEPOINTs work and lets a caller ask for ``BEGIN IMMEDIATE`` (take the write lock up front) with
the execution option ``sqlite_begin="IMMEDIATE"`` (:func:`for_writing`).

Why it matters: SQLite allows one writer at a time. A transaction begun ``DEFERRED`` that reads and
then writes must upgrade its read snapshot to the write lock; if another connection committed in
between, SQLite fails it at once with "database is locked", without waiting for the busy timeout.
A transaction begun ``IMMEDIATE`` takes the write lock first, so it waits its turn instead. Every
transaction that writes therefore begins ``IMMEDIATE`` (:func:`make_session_factory` does so by
default), while read-only work stays ``DEFERRED`` and runs concurrently with the writer (WAL).
A write inside a ``DEFERRED`` transaction warns with :class:`DeferredWriteWarning`, so a path that
forgot is found by the tests (which turn warnings into errors) rather than by a user under load.

Before it begins, a write transaction waits for its turn among the writers of its own process
(:mod:`taskledger.store.write_queue`): SQLite serves waiting writers in no particular order, and
under a steady load one of them could otherwise wait out its busy timeout while others got in.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import warnings
import weakref
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from taskledger.store.write_queue import WriteQueue, begin_polling

_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}
_WRITE_STATEMENT = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
#: Set in a connection's ``info`` while its transaction holds its process's write turn.
_TURN = "taskledger_write_turn"
#: By dialect: shared by an engine and its ``execution_options()`` copies, kept by ``dispose()``.
_QUEUES: weakref.WeakKeyDictionary[Dialect, WriteQueue] = weakref.WeakKeyDictionary()


class DeferredWriteWarning(RuntimeWarning):
    """A SQLite transaction begun ``DEFERRED`` wrote: under contention it fails instead of
    waiting. Begin it with :func:`for_writing` (or a session from :func:`make_session_factory`)."""


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 5000, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with taskledger's connection settings.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path`` or ``postgresql+psycopg://...``.
        sqlite_busy_timeout_ms: How long a write transaction waits for its turn in its
            process (:mod:`taskledger.store.write_queue`), and then SQLite for the lock, before
            ``database is locked``.
        **kwargs: Passed to :func:`sqlalchemy.create_engine`.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and "mode=memory" not in url:
            private_file(Path(parsed.database))
        connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def private_file(path: Path) -> None:
    """Make the SQLite file ``path`` readable by its owner only (0600), creating it empty if it
    is missing, before SQLite opens it: SQLite gives its WAL and shared-memory files the mode of
    the database file."""
    if not path.parent.is_dir():
        return  # SQLite reports a missing directory better than we could
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        # A file made by an older version, or by hand: tightened if it is ours to change.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def write_queue(engine: Engine) -> WriteQueue | None:
    """The queue that the write transactions of ``engine`` wait in (SQLite), or None."""
    return _QUEUES.get(engine.dialect)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    queue = _QUEUES[engine.dialect] = WriteQueue()

    def end_turn(info: MutableMapping[Any, Any]) -> None:
        if info.pop(_TURN, False):
            queue.release()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"unknown sqlite_begin mode {mode!r}")
        if mode != "DEFERRED":
            # This process's writers first, in arrival order; then SQLite's lock, polled often.
            if not queue.acquire(busy_timeout_ms / 1000):
                raise OperationalError(
                    f"BEGIN {mode}",
                    None,
                    sqlite3.OperationalError(
                        "database is locked (this process's other writers held it throughout "
                        "the busy timeout)"
                    ),
                )
            conn.info[_TURN] = True
            try:
                begin_polling(conn.connection.driver_connection, mode, busy_timeout_ms)
            except sqlite3.OperationalError as exc:
                end_turn(conn.info)
                raise OperationalError(f"BEGIN {mode}", None, exc) from exc
            except BaseException:
                end_turn(conn.info)
                raise
        else:
            conn.exec_driver_sql("BEGIN DEFERRED")
        conn.info["sqlite_begin"] = mode

    @event.listens_for(engine, "before_cursor_execute")
    def _check_write(
        conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        if conn.info.get("sqlite_begin") == "DEFERRED" and _WRITE_STATEMENT.match(statement):
            _warn_deferred_write(statement)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Any) -> None:
        if conn.invalidated:  # no DBAPI connection left to read; its turn went back with it
            return
        conn.info.pop("sqlite_begin", None)
        end_turn(conn.info)

    # A connection whose transaction never ended through SQLAlchemy (returned to the pool with
    # it open, or discarded) gives its turn back too, or every writer after it would wait.
    @event.listens_for(engine.pool, "checkin")
    @event.listens_for(engine.pool, "invalidate")
    @event.listens_for(engine.pool, "close")
    def _on_release(_dbapi_connection: Any, record: ConnectionPoolEntry, *_args: Any) -> None:
        if record is not None:
            end_turn(record.info)


def _warn_deferred_write(statement: str) -> None:
    """Warn, attributing the warning to the code that wrote rather than to SQLAlchemy, so that
    filters can tell taskledger's own paths from, say, a test setting up its data."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        ("sqlalchemy.", __name__)
    ):
        frame = frame.f_back
    warnings.warn_explicit(
        f"SQLite write in a DEFERRED transaction: {statement[:80]!r}",
        DeferredWriteWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__", "?"),
    )


def for_writing(engine: Engine) -> Engine:
    """``engine`` with every transaction begun ``IMMEDIATE`` on SQLite (a no-op elsewhere)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay usable after commit.

    Its transactions may write, so on SQLite they begin ``IMMEDIATE`` (see the module docstring);
    ``read_only=True`` gives sessions that never write and begin ``DEFERRED``, concurrent with the
    writer.
    """
    bind = engine.execution_options(sqlite_begin="DEFERRED" if read_only else "IMMEDIATE")
    return sessionmaker(bind=bind, expire_on_commit=False)


def read_only(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """``sessions`` for work that only reads: on SQLite its transactions begin ``DEFERRED``, so a
    long read (a preview, stats) never holds the write lock that writers wait for."""
    bind = sessions.kw["bind"]
    return sessionmaker(
        bind=bind.execution_options(sqlite_begin="DEFERRED"),
        expire_on_commit=sessions.kw.get("expire_on_commit", True),
    )


def is_sqlite(bind: Engine | Connection | Dialect) -> bool:
    """Whether ``bind`` (an engine, a connection or their dialect) talks to SQLite."""
    dialect = bind if isinstance(bind, Dialect) else bind.dialect
    return dialect.name == "sqlite"
