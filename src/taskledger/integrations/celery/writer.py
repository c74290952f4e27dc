"""The runs side of the Celery collector: task states written through the client.

A run is created once, by ``runs:batch`` with the key :func:`~.mapping.task_run_key`, which
answers with its id whether this call created it or another collector did earlier; later
changes are ``PATCH`` es of that id, only ever forward. When the server cannot be reached the
states stay pending (the collector then does not acknowledge their events), and, with a spool,
runs not yet created are queued in the client's buffered mode, which keeps them on disk until
the server answers again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from taskledger.client import Ledger
from taskledger.client.errors import (
    Conflict,
    LedgerConnectionError,
    LedgerError,
    NotFound,
    RateLimited,
    ServerError,
    ValidationError,
)
from taskledger.integrations.celery.mapping import (
    STATUS_ORDER,
    TERMINAL,
    MappingOptions,
    TaskState,
)
from taskledger.integrations.celery.metrics import Counters

log = logging.getLogger("taskledger.collect.celery")

#: The most task states kept in memory; the oldest settled ones go first. A state forgotten
#: and seen again costs one more request, never a wrong run.
MAX_STATES = 50_000
#: Runs per ``runs:batch`` request.
BATCH = 500
#: Errors that mean "the server did not take it now; try again later".
UNAVAILABLE = (LedgerConnectionError, ServerError, RateLimited)


class RunWriter:
    """Folds task events into states and writes the states that moved.

    Args:
        ledger: The client; buffered (``buffer=True``, with ``spool_dir``) to keep runs on disk
            while the server is unreachable.
        options: What goes into ``inputs``.
        counters: Where the writer counts what it did.
    """

    def __init__(self, ledger: Ledger, options: MappingOptions, counters: Counters) -> None:
        self.ledger = ledger
        self.options = options
        self.counters = counters
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
        """States that moved and are not written yet."""
        return len(self._dirty)

    def sync(self) -> bool:
        """Write every state that moved; whether all of them are on the server now (or, with a
        spool, created on disk to be sent later)."""
        if not self._dirty:
            return True
        states = list(self._dirty.values())
        try:
            self._create([s for s in states if s.pk is None])
            for state in states:
                if state.pk is not None and state.dirty:
                    self._patch(state, None)
                self._settle(state)
        except UNAVAILABLE as exc:
            self.counters.inc("write_errors")
            self.counters.note_error(exc)
            log.warning("taskledger is unavailable (%s); the runs will be written later", exc)
            self._spool([s for s in self._dirty.values() if s.pk is None])
            return False
        return not self._dirty

    # --- writing ----------------------------------------------------------------------------------

    def _create(self, states: list[TaskState]) -> None:
        for start in range(0, len(states), BATCH):
            chunk = states[start : start + BATCH]
            items = [s.create_item() for s in chunk]
            try:
                result = self.ledger.runs.batch(items)
            except ValidationError as exc:
                # Refused item by item: write the others, count the refused (never loop on them).
                self._create_one_by_one(chunk, items, exc)
                continue
            for state, item, answer in zip(chunk, items, result.items, strict=True):
                state.pk = answer.id
                if answer.created:
                    state.written = state.rank
                    self.counters.inc("runs_created")
                else:
                    self._adopt(state, item)

    def _create_one_by_one(
        self, states: list[TaskState], items: list[dict[str, Any]], exc: ValidationError
    ) -> None:
        log.warning("a batch of %d runs was refused (%s); sending them one by one", len(items), exc)
        for state, item in zip(states, items, strict=True):
            try:
                result = self.ledger.runs.batch([item])
            except ValidationError as one:
                log.error("the run of task %s was refused: %s", state.task_id, one)
                self.counters.inc("runs_refused")
                self.counters.note_error(one)
                state.written = state.rank  # as written: it never will be
                continue
            answer = result.items[0]
            state.pk = answer.id
            if answer.created:
                state.written = state.rank
                self.counters.inc("runs_created")
            else:
                self._adopt(state, item)

    def _adopt(self, state: TaskState, item: dict[str, Any]) -> None:
        """The run existed (another collector, an earlier life of this one): bring it forward
        if this state is ahead of it, never back."""
        self.counters.inc("runs_existing")
        if state.terminal:
            self._patch(state, None)  # a 409 says it is final already
            return
        stored = self.ledger.runs.get(state.pk or 0)
        ahead = STATUS_ORDER.get(state.status, 0) > STATUS_ORDER.get(stored.status, 0)
        # A retry brings a running task back to queued: forward, though the order says back.
        retried = bool(state.retries) and state.status != stored.status
        if stored.status in TERMINAL or not (ahead or retried):
            state.written = state.rank
            return
        self._patch(state, stored.started_at)

    def _patch(self, state: TaskState, stored_started: datetime | None) -> None:
        assert state.pk is not None
        fields = state.update_fields(stored_started)
        try:
            self.ledger.runs.update(state.pk, fields)
        except Conflict:
            self.counters.inc("updates_refused_terminal")  # final already: never moved back
        except NotFound:
            self.counters.inc("updates_missing_run")  # deleted meanwhile (retention)
        except ValidationError:
            # Its stored start is later than this end (clock skew): let the server date it.
            fields.pop("finished_at", None)
            fields.pop("duration_ms", None)
            try:
                self.ledger.runs.update(state.pk, fields)
            except (Conflict, NotFound, ValidationError) as exc:
                self.counters.inc("updates_refused")
                self.counters.note_error(exc)
            else:
                self.counters.inc("runs_updated")
        else:
            self.counters.inc("runs_updated")
        state.written = state.rank

    def _settle(self, state: TaskState) -> None:
        if not state.dirty:
            self._dirty.pop(state.task_id, None)

    def _spool(self, states: Iterable[TaskState]) -> None:
        """Runs not created yet go to the client's buffer (and its spool), which sends them once
        the server answers. They stay pending here too: once it does, :meth:`sync` finds them
        created (the same key) and moves them on if their task did."""
        if not self.ledger.buffered:
            return
        for state in states:
            if state.spooled >= state.rank:
                continue
            try:
                self.ledger.record(state.create_item())
            except LedgerError as exc:
                self.counters.inc("spool_errors")
                self.counters.note_error(exc)
                return
            state.spooled = state.rank
            self.counters.inc("runs_spooled")

    def _evict(self) -> None:
        """Forget the oldest settled states beyond ``MAX_STATES`` (pending ones are kept)."""
        excess = len(self.states) - MAX_STATES
        if excess <= 0:
            return
        settled = [k for k, s in self.states.items() if not s.dirty][: max(excess, 1000)]
        for task_id in settled:
            del self.states[task_id]

    # --- reconciling from a result backend --------------------------------------------------------

    def unfinished(self) -> list[tuple[int, str, str]]:
        """``(id, run_id, status)`` of the collector's runs still queued or running on the
        server."""
        out = []
        for run in self.ledger.runs.iter(status=["queued", "running"], page_size=500):
            if (run.idempotency_key or "").startswith("celery:"):
                out.append((run.id, run.run_id, run.status))
        return out
