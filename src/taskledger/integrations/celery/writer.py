"""The runs side of the Celery collector: task states written through the client's buffer.

Every time a task's state moves, its whole state (a ``RunCreate`` keyed by
:func:`~.mapping.task_run_key`) is recorded in the client's buffered mode with
``on_existing="advance"``: the first one creates the run, each later one moves it forward, and a
state sent twice, late or by another collector changes nothing (the server never moves a run to
an earlier stage, nor out of a terminal status). The buffer sends the states in the order they
were recorded, in ``runs:batch`` requests, and keeps what the server cannot take in its spool on
disk, also across a restart of the collector.

:meth:`RunWriter.sync` returns once every state recorded is on the server or in the spool: only
then does the collector acknowledge the broker messages they came from. Without a spool, only
once they are on the server.

One move goes back a stage: a retried task returns from ``running`` to ``queued``. The answer to
each batch (:meth:`RunWriter.on_sent`, in the buffer's thread, before the next batch goes) shows
where such a run stands, and a ``PATCH`` brings it back to ``queued``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

from taskledger.client import Ledger
from taskledger.client.errors import LedgerError
from taskledger.integrations.celery.mapping import (
    QUEUED,
    RUNNING,
    TERMINAL,
    MappingOptions,
    TaskState,
)
from taskledger.integrations.celery.metrics import Counters
from taskledger.schemas.runs import BatchResult

log = logging.getLogger("taskledger.collect.celery")

#: The most task states kept in memory; the oldest settled ones go first. A final state is
#: forgotten as soon as it is written. A state forgotten and seen again is sent again, which the
#: server takes as a replay, so memory stays flat however many tasks go by.
MAX_STATES = 10_000


class RunWriter:
    """Folds task events into states and records the states that moved.

    Args:
        ledger: The client, buffered with ``on_existing="advance"`` and this writer's
            :meth:`on_sent` (see :func:`~.collector.collector_ledger`).
        options: What goes into ``inputs``.
        counters: Where the writer counts what it did.
        persist_timeout: The longest :meth:`sync` waits for the server (or the spool).
    """

    def __init__(
        self,
        ledger: Ledger,
        options: MappingOptions,
        counters: Counters,
        persist_timeout: float = 30.0,
    ) -> None:
        self.ledger = ledger
        self.options = options
        self.counters = counters
        self.persist_timeout = persist_timeout
        self.states: OrderedDict[str, TaskState] = OrderedDict()
        self._dirty: dict[str, TaskState] = {}

    def observe(self, event: dict[str, Any]) -> None:
        """Fold one task event into its task's state."""
        task_id = event.get("uuid")
        if not isinstance(task_id, str) or not task_id:
            self.counters.inc("events_ignored")
            return
        state = self.states.get(task_id)
        if state is None:
            state = self.states[task_id] = TaskState(task_id)
        else:
            self.states.move_to_end(task_id)
        if state.apply(event, self.options):
            self._dirty[task_id] = state
        self._evict()

    def put(self, state: TaskState) -> None:
        """Take ``state`` as this task's, to be written by the next :meth:`sync`."""
        self.states[state.task_id] = state
        self._dirty[state.task_id] = state

    @property
    def pending(self) -> int:
        """States that moved and are not on the server (or in the spool) yet."""
        return len(self._dirty)

    def sync(self) -> bool:
        """Record every state that moved; whether all of them are on the server now, or in the
        spool on disk to be sent later."""
        if not self._dirty:
            return True
        for state in self._dirty.values():
            if state.recorded >= state.rank:
                continue  # in the buffer already, waiting for the server
            try:
                self.ledger.record(state.create_item())
            except LedgerError as exc:  # the spool is full, or a run too large for a batch
                self.counters.inc("spool_errors")
                self.counters.note_error(exc)
                log.warning("could not queue the run of task %s: %s", state.task_id, exc)
                return False
            state.recorded = state.rank
            self.counters.inc("states_recorded")
        if not self.ledger.persist(self.persist_timeout):
            self.counters.inc("write_errors")
            log.warning("taskledger did not take the runs in time; they are written later")
            return False
        for task_id, state in list(self._dirty.items()):
            if state.recorded >= state.rank:
                state.written = state.recorded
                del self._dirty[task_id]
                if state.terminal:
                    self.states.pop(task_id, None)  # final: nothing can move it any more
        return not self._dirty

    def on_sent(self, items: list[dict[str, Any]], result: BatchResult) -> None:
        """A batch the server took (called in the buffer's thread): count what it did, and bring
        retried runs back to ``queued``."""
        last: dict[str, int] = {}
        for index, item in enumerate(items):
            last[str(item.get("idempotency_key"))] = index
        newest_end: datetime | None = None
        for index, (item, answer) in enumerate(zip(items, result.items, strict=True)):
            if answer.created:
                self.counters.inc("runs_created")
            elif answer.advanced:
                self.counters.inc("runs_updated")
            else:
                self.counters.inc("runs_unchanged")
            if item.get("status") in TERMINAL and item.get("finished_at"):
                end = datetime.fromisoformat(item["finished_at"])
                newest_end = end if newest_end is None else max(newest_end, end)
            if (
                item.get("status") == QUEUED
                and answer.status == RUNNING
                and _retries(item)
                and last[str(item.get("idempotency_key"))] == index
            ):
                self._back_to_queued(answer.id, item)
        if newest_end is not None:
            lag = max(0.0, datetime.now(newest_end.tzinfo).timestamp() - newest_end.timestamp())
            self.counters.set("lag_seconds", lag)
            self.counters.maximum("lag_seconds_max", lag)

    def _back_to_queued(self, run_pk: int, item: dict[str, Any]) -> None:
        fields = {"status": QUEUED}
        if item.get("log_excerpt") is not None:
            fields["log_excerpt"] = item["log_excerpt"]
        try:
            self.ledger.runs.update(run_pk, fields)
        except LedgerError as exc:  # final meanwhile, deleted, or unreachable: the next state
            self.counters.inc("updates_refused")  # moves it on anyway
            self.counters.note_error(exc)
        else:
            self.counters.inc("runs_retried")

    def _evict(self) -> None:
        """Forget the oldest settled states beyond ``MAX_STATES`` (pending ones are kept)."""
        excess = len(self.states) - MAX_STATES
        if excess <= 0:
            return
        settled = [k for k, s in self.states.items() if not s.dirty][: max(excess, 1000)]
        for task_id in settled:
            del self.states[task_id]

    # --- reconciling from a result backend --------------------------------------------------------

    def unfinished(self) -> list[str]:
        """The ``run_id`` (task id) of each of the collector's runs still queued or running on
        the server."""
        return [
            run.run_id
            for run in self.ledger.runs.iter(status=["queued", "running"], page_size=500)
            if (run.idempotency_key or "").startswith("celery:")
        ]


def _retries(item: dict[str, Any]) -> int:
    inputs = item.get("inputs")
    celery = inputs.get("celery") if isinstance(inputs, dict) else None
    retries = celery.get("retries") if isinstance(celery, dict) else None
    return retries if isinstance(retries, int) else 0
