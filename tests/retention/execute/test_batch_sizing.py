"""Batches sized by a time budget: the sizing function, and runs whose batches vary in size."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from taskledger.retention.archive.reader import ArchiveReader, verify
from taskledger.retention.execute import executor as executor_module
from taskledger.retention.execute import partitions as partitions_module
from taskledger.retention.execute.batch_sizing import (
    FIRST_BATCH,
    MAX_GROWTH,
    MIN_BATCH,
    first_batch_size,
    next_batch_size,
)
from taskledger.retention.policy.load import parse_policy
from taskledger.store.models import Run
from tests.retention.engine_helpers import populated, run_policy

BUDGET = 0.1


def test_the_first_batch_is_1000_rows_or_batch_size() -> None:
    assert FIRST_BATCH == 1000
    assert first_batch_size(10_000) == 1000
    assert first_batch_size(500) == 500
    assert first_batch_size(1) == 1


def test_a_fast_batch_grows_toward_the_budget_at_most_twice_per_step() -> None:
    # 1000 rows in 10 ms: the budget would allow 10,000; growth is capped at 2x.
    assert next_batch_size(1000, 1000, 0.01, budget=BUDGET, batch_size=100_000) == 2000
    # 1000 rows in 80 ms: the budget allows 1250; half the way there.
    assert next_batch_size(1000, 1000, 0.08, budget=BUDGET, batch_size=100_000) == 1125


def test_repeated_fast_batches_converge_on_the_budget() -> None:
    size, per_row = 1000, 0.00002  # 20 µs a row: 5000 rows in the budget
    for _ in range(30):
        size = next_batch_size(size, size, size * per_row, budget=BUDGET, batch_size=100_000)
    assert 4900 <= size <= 5000


def test_an_overrun_shrinks_at_once_below_the_budget() -> None:
    # 4000 rows in 400 ms: 1000 fit the budget, and the next batch takes fewer.
    size = next_batch_size(4000, 4000, 0.4, budget=BUDGET, batch_size=10_000)
    assert size < 1000
    assert size * 0.4 / 4000 < BUDGET


def test_sizes_stay_between_the_minimum_and_batch_size() -> None:
    assert next_batch_size(8000, 8000, 0.001, budget=BUDGET, batch_size=10_000) == 10_000
    assert next_batch_size(200, 200, 10.0, budget=BUDGET, batch_size=10_000) == MIN_BATCH
    # A batch_size below the minimum still wins.
    assert next_batch_size(20, 20, 10.0, budget=BUDGET, batch_size=20) == 20
    assert next_batch_size(20, 20, 0.001, budget=BUDGET, batch_size=20) == 20


def test_a_batch_under_the_budget_never_shrinks() -> None:
    # Fewer rows than asked for (skipped or the last ones), quickly: the size is kept.
    assert next_batch_size(1000, 10, 0.001, budget=BUDGET, batch_size=10_000) >= 1000


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_a_clock_that_did_not_move_grows_the_batch(seconds: float) -> None:
    assert next_batch_size(1000, 1000, seconds, budget=BUDGET, batch_size=10_000) == int(
        1000 * MAX_GROWTH
    )


@pytest.mark.parametrize("archive", [True, False], ids=["archived", "unarchived"])
def test_batches_of_varying_sizes_archive_and_delete_every_row_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive: bool
) -> None:
    """The sizer is replaced by a fixed sequence of sizes, large and small: every matching row
    is deleted, and (archived) in exactly one part, parts holding the sizes asked for."""
    populated(engine, runs=400, days=400)
    sequence = [3, 17, 1, 40, 8, 64, 2]
    sizes = itertools.cycle(sequence)
    asked: list[int] = []

    def sized(size: int, rows: int, seconds: float, **_: Any) -> int:
        following = next(sizes)
        asked.append(following)
        return following

    monkeypatch.setattr(executor_module, "next_batch_size", sized)
    # Batches only: on PostgreSQL the partitions this rule covers whole would otherwise be
    # dropped whole (that path is test_partitions').
    monkeypatch.setattr(partitions_module, "applies", lambda *_: False)
    policy = parse_policy(
        'batch_size = 5\nbatch_time_budget = "50ms"\n'
        '[[rule]]\nname = "r"\ntable = "runs"\nolder_than = "200d"\naction = "delete"\n'
        f"archive = {str(archive).lower()}\n",
        default_name="sizes",
    )
    with engine.connect() as conn:
        before = set(conn.scalars(select(Run.id)))
    previewed, report = run_policy(engine, policy, tmp_path)
    assert report.outcome == "ok"
    matched = previewed.rules[0].matched
    assert matched > sum(sequence)  # the sequence comes round more than once
    with engine.connect() as conn:
        after = set(conn.scalars(select(Run.id)))
    deleted = before - after
    assert len(deleted) == matched == report.rules[0].affected
    if not archive:
        return
    assert report.archive_uri is not None
    assert verify(report.archive_uri).ok
    with ArchiveReader(report.archive_uri) as reader:
        parts = reader.manifest.files
        keys = [row["id"] for part in parts for row in reader.iter_rows(part)]
    assert len(keys) == len(set(keys)) == matched
    assert set(keys) == deleted
    # The first batch is batch_size (5, below 1,000), then each the size the sizer gave.
    wanted = [5, *asked]
    assert [part.rows for part in parts[:-1]] == wanted[: len(parts) - 1]
    assert parts[-1].rows <= wanted[len(parts) - 1]
