"""SQLite: how long the executor pauses between batches for other writers (``pause_for``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from taskledger.retention.execute.sqlite_pacing import (
    SQLITE_LONG_PAUSE,
    SQLITE_STARVED_AFTER,
    SQLITE_WINDOW_EVERY,
    SQLITE_WRITERS_GONE,
    SQLITE_YIELD,
    BetweenBatches,
    pause_for,
)
from taskledger.store import make_engine

BATCH = 0.06


def test_active_writers_get_a_share_of_each_batch() -> None:
    now = 100.0
    pause = pause_for(now, BATCH, other_commit_at=now - 0.01, window_at=now - 0.01)
    assert pause == pytest.approx(BATCH * SQLITE_YIELD)


@pytest.mark.parametrize("quiet", [SQLITE_STARVED_AFTER + 0.01, 1.0, SQLITE_WRITERS_GONE - 0.01])
def test_a_writer_that_went_quiet_gets_a_long_pause(quiet: float) -> None:
    now = 100.0
    pause = pause_for(now, BATCH, other_commit_at=now - quiet, window_at=now - 0.01)
    assert pause == SQLITE_LONG_PAUSE > 0.1  # longer than SQLite's slowest poll interval


@pytest.mark.parametrize("other_commit_at", [None, 100.0 - SQLITE_WRITERS_GONE - 1])
def test_without_writers_only_a_periodic_long_pause(other_commit_at: float | None) -> None:
    now = 100.0
    assert pause_for(now, BATCH, other_commit_at=other_commit_at, window_at=now - 0.1) == 0
    due = now - SQLITE_WINDOW_EVERY
    assert pause_for(now, BATCH, other_commit_at=other_commit_at, window_at=due) == (
        SQLITE_LONG_PAUSE
    )


@pytest.mark.parametrize("batch", [0.005, 0.06, 0.2])
def test_a_writer_never_seen_is_never_kept_out_longer_than_a_window(
    batch: float,
) -> None:
    """Batches run back to back while nobody commits: the gaps between long pauses (in which a
    writer polling every 100 ms gets in) stay under SQLITE_WINDOW_EVERY."""
    clock, window_at, last_window_end = 0.0, 0.0, 0.0
    gaps = []
    for _ in range(500):
        clock += batch
        pause = pause_for(clock, batch, other_commit_at=None, window_at=window_at)
        if pause:
            assert pause == SQLITE_LONG_PAUSE
            gaps.append(clock - last_window_end)
            clock += pause
            window_at = last_window_end = clock
    assert gaps and max(gaps) < SQLITE_WINDOW_EVERY + 1e-9
    # and the run is not all pauses: each gap holds at least one batch, and at least the window's
    # period less one batch
    assert min(gaps) >= max(batch, SQLITE_WINDOW_EVERY - batch) - 1e-9


def test_between_batches_on_a_real_file_opens_a_window_and_notes_it(tmp_path: Path) -> None:
    """No writer: no pause after a batch until the window is due, then a long one, after which
    the next window is counted from its end."""
    engine = make_engine(f"sqlite:///{tmp_path / 'pauses.db'}")
    try:
        with engine.connect() as conn, BetweenBatches(conn) as between:
            opened = between.window_at
            between.batch_done(0.0)
            assert between.window_at == opened  # not due yet: no window
            time.sleep(SQLITE_WINDOW_EVERY)
            before = time.monotonic()
            between.batch_done(0.0)
            assert time.monotonic() - before >= SQLITE_LONG_PAUSE
            assert between.window_at >= before + SQLITE_LONG_PAUSE
            assert between.other_commit_at is None
    finally:
        engine.dispose()


def test_a_window_cut_short_by_another_writer_still_counts(tmp_path: Path) -> None:
    """A writer commits during the long pause: the pause ends, the commit is noted, and the
    next window is counted from then."""
    path = tmp_path / "pauses.db"
    engine = make_engine(f"sqlite:///{path}")
    other = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.connect() as conn, BetweenBatches(conn) as between:
            assert between.checkpointer is not None
            checkpoint = between.checkpointer.started

            def commit_once_the_pause_begins() -> None:
                checkpoint.wait(5)  # the checkpoint begins right before the pause
                with other.begin() as writer:
                    writer.execute(text("INSERT INTO t VALUES (1)"))

            # The commit may land before the pause starts (then it is no window): try again.
            for _ in range(5):
                time.sleep(SQLITE_WINDOW_EVERY)
                before = time.monotonic()
                checkpoint.clear()
                writer = threading.Thread(target=commit_once_the_pause_begins)
                writer.start()
                between.batch_done(0.0)
                writer.join()
                seen = between.other_commit_at
                if seen is not None and seen > before and between.window_at > before:
                    break
            else:
                pytest.fail("no commit landed inside a long pause in five tries")
            assert between.window_at >= seen
    finally:
        engine.dispose()
        other.dispose()
