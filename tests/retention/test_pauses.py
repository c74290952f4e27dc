"""SQLite: how long the executor pauses between batches for other writers (``pause_for``)."""

from __future__ import annotations

import pytest

from taskledger.retention.executor import (
    SQLITE_LONG_PAUSE,
    SQLITE_STARVED_AFTER,
    SQLITE_WINDOW_EVERY,
    SQLITE_WRITERS_GONE,
    SQLITE_YIELD,
    pause_for,
)

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
def test_a_writer_never_seen_is_never_kept_out_longer_than_a_window_and_a_batch(
    batch: float,
) -> None:
    """Batches run back to back while nobody commits: the gaps between long pauses (in which a
    writer polling every 100 ms gets in) stay under SQLITE_WINDOW_EVERY plus one batch."""
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
    assert gaps and max(gaps) <= SQLITE_WINDOW_EVERY + batch
    # and the run is not all pauses: at most a window per SQLITE_WINDOW_EVERY of batches
    assert len(gaps) <= 500 * batch / SQLITE_WINDOW_EVERY + 1
