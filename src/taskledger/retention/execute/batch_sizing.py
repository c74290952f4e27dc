"""How many rows the executor's next batch takes, so that each write transaction lasts about the
policy's ``batch_time_budget``.

Pure functions, called by the batch loop (:mod:`taskledger.retention.execute.executor`) after
every batch with the rows it handled and the seconds its transaction took. The first batch is
:data:`FIRST_BATCH` rows; then each batch is sized from the rate the last one ran at:

- under the budget, the size grows toward ``rate * budget``, half the way at each step
  (damping: one fast batch, a cached page, does not double it at once), and never more than
  :data:`MAX_GROWTH` times per step;
- over the budget, it shrinks at once to ``rate * budget`` (less :data:`OVERRUN_MARGIN`): a
  long transaction is what the budget exists to prevent, on SQLite it keeps every other writer
  waiting;
- always between :data:`MIN_BATCH` (or ``batch_size`` when that is smaller) and ``batch_size``.
"""

from __future__ import annotations

#: The first batch of every rule, in rows (or the rule's ``batch_size`` when smaller).
FIRST_BATCH = 1000
#: The smallest batch once sized by time: below this a batch is mostly its round trips and
#: commit (a rule's ``batch_size`` below it still wins).
MIN_BATCH = 100
#: A batch grows at most this many times over the one before it.
MAX_GROWTH = 2.0
#: Under the budget, the share of the way to the size the budget allows taken at each step.
DAMPING = 0.5
#: Over the budget, the size is cut to this share of what the budget allows, to land under it.
OVERRUN_MARGIN = 0.8


def first_batch_size(batch_size: int) -> int:
    """The first batch's size: :data:`FIRST_BATCH`, or ``batch_size`` when that is smaller."""
    return max(1, min(FIRST_BATCH, batch_size))


def next_batch_size(size: int, rows: int, seconds: float, *, budget: float, batch_size: int) -> int:
    """The size of the batch after one of ``size`` rows that handled ``rows`` in ``seconds``.

    Args:
        size: The last batch's size (its ``LIMIT``).
        rows: The rows it handled (fewer than ``size`` when rows were skipped or ran out).
        seconds: How long its write transaction took, from begin to commit.
        budget: The time a write transaction should take (seconds).
        batch_size: The largest batch allowed.

    Returns:
        A size between ``min(MIN_BATCH, batch_size)`` and ``batch_size``.
    """
    lowest = min(MIN_BATCH, batch_size)
    if rows <= 0 or seconds <= 0:
        # Nothing to learn from (no rows, or a clock that did not move): grow, as fast as allowed.
        wanted = size * MAX_GROWTH
    else:
        allowed = rows / seconds * budget
        if seconds > budget:
            wanted = allowed * OVERRUN_MARGIN
        else:
            wanted = min(size + (allowed - size) * DAMPING, size * MAX_GROWTH)
            wanted = max(wanted, size)  # under the budget, never smaller than the last batch
    return int(max(lowest, min(batch_size, wanted)))
