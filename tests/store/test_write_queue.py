"""SQLite: a process's write transactions wait for their turn in arrival order, reads never
queue, and a turn comes back however its transaction ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from taskledger.api.errors import database_busy
from taskledger.store.engine import for_writing, make_engine, write_queue
from taskledger.store.write_queue import WriteQueue
from tests.serving import DEADLINE, wait_until


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    try:
        yield engine
    finally:
        engine.dispose()


def _queue(engine: Engine) -> WriteQueue:
    queue = write_queue(engine)
    assert queue is not None
    return queue


def test_writers_of_a_process_take_turns_in_arrival_order(sqlite_engine: Engine) -> None:
    queue = _queue(sqlite_engine)
    order: list[int] = []

    def write(n: int) -> None:
        with for_writing(sqlite_engine).begin() as conn:
            order.append(n)
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    with for_writing(sqlite_engine).begin():
        for waiting, thread in enumerate(threads, start=1):
            thread.start()
            # The next one starts once this one is in line behind it: arrival order is known.
            wait_until(lambda waiting=waiting: queue.waiting == waiting, "a writer in line")
    for thread in threads:
        thread.join(DEADLINE)
    assert order == list(range(6))
    assert not queue.held and queue.waiting == 0
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 6


def test_reads_never_queue(sqlite_engine: Engine) -> None:
    queue = _queue(sqlite_engine)
    seen: list[int] = []

    def read() -> None:
        with sqlite_engine.begin() as conn:  # DEFERRED: a read
            seen.append(int(conn.execute(text("SELECT count(*) FROM t")).scalar_one()))

    with for_writing(sqlite_engine).begin():
        assert queue.held
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(DEADLINE)
        assert seen == [0] and queue.waiting == 0


def test_a_turn_comes_back_however_the_transaction_ends(sqlite_engine: Engine) -> None:
    queue = _queue(sqlite_engine)
    writing = for_writing(sqlite_engine)

    with writing.begin():
        assert queue.held
    assert not queue.held  # committed

    with pytest.raises(RuntimeError, match="boom"), writing.begin():
        raise RuntimeError("boom")
    assert not queue.held  # rolled back

    conn = writing.connect()
    conn.begin()
    assert queue.held
    conn.close()  # closed with its transaction open
    assert not queue.held

    conn = writing.connect()
    transaction = conn.begin()
    conn.invalidate()  # its DBAPI connection discarded
    assert not queue.held
    transaction.rollback()
    conn.close()

    with writing.begin() as conn:  # and the next writer still gets in
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not queue.held


def test_a_writer_kept_waiting_past_the_busy_timeout_is_told_the_database_is_busy(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}", sqlite_busy_timeout_ms=100)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with for_writing(engine).begin():
                pass
        except OperationalError as exc:
            errors.append(exc)

    try:
        queue = _queue(engine)
        with for_writing(engine).begin():
            waiter = threading.Thread(target=write)
            waiter.start()
            waiter.join(DEADLINE)  # it gives up while the turn is still held here
        assert len(errors) == 1 and database_busy(errors[0]), errors
        assert queue.waiting == 0 and not queue.held
    finally:
        engine.dispose()


def test_the_queue_hands_over_first_come_first_served() -> None:
    queue = WriteQueue()
    assert queue.acquire(0)
    assert not queue.acquire(0)  # held: no turn within no time
    assert queue.waiting == 0  # and who gave up left the line
    got = threading.Event()

    def wait() -> None:
        if queue.acquire(DEADLINE):
            got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: queue.waiting == 1, "a waiter")
    queue.release()  # handed over, not freed
    waiter.join(DEADLINE)
    assert got.is_set() and queue.held
    queue.release()
    assert not queue.held
    with pytest.raises(RuntimeError, match="nobody holds"):
        queue.release()


def test_postgresql_has_no_queue(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        assert write_queue(engine) is not None
        assert write_queue(engine.execution_options(sqlite_begin="IMMEDIATE")) is not None
    else:
        assert write_queue(engine) is None  # its row locks wait in order already


def test_a_writer_of_another_process_gets_its_turn_between_a_stream_of_writers(
    tmp_path: Path,
) -> None:
    """Four writers of one process each hold the lock a while and follow one another with hardly
    a gap (a queue hands its turn on at once): the lock is free a few percent of the time, for
    about a millisecond at a time. A writer of another process (another engine: another queue)
    polling at SQLite's growing intervals would mostly miss those gaps and wait out its busy
    timeout; polling every millisecond, it gets in every time."""
    url = f"sqlite:///{tmp_path / 'stream.db'}"
    busy = make_engine(url)
    other = make_engine(url)  # the default busy timeout, 5 s
    with busy.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    stop = threading.Event()
    streamed: list[int] = []

    def stream() -> None:
        while not stop.is_set():
            with for_writing(busy).begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (0)"))
                time.sleep(0.03)  # pacing: a request that holds the lock a while
            streamed.append(1)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(streamed) >= 20, "the stream of writers")
        for n in range(1, 21):
            with for_writing(other).begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    finally:
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)
        busy.dispose()
        other.dispose()
