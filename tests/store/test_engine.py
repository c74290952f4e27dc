"""Connection settings: WAL, foreign keys and a busy timeout on SQLite; BEGIN modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from taskledger.store.engine import make_engine


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    finally:
        engine.dispose()


def test_sqlite_begin_immediate_takes_the_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    engine = make_engine(url, sqlite_busy_timeout_ms=0)
    other = make_engine(url, sqlite_busy_timeout_ms=0)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        immediate = engine.execution_options(sqlite_begin="IMMEDIATE")
        # Nothing written yet, but the lock is held: another writer fails at once.
        with (
            immediate.begin(),
            pytest.raises(Exception, match="locked"),
            other.begin() as conn2,
        ):
            conn2.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        engine.dispose()
        other.dispose()


def test_unknown_begin_mode_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with (
            pytest.raises(ValueError, match="sqlite_begin"),
            engine.execution_options(sqlite_begin="SOMETIMES").begin(),
        ):
            pass
    finally:
        engine.dispose()
