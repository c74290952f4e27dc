"""Celery task events to the state of one taskledger run, without I/O (used by the writer).

A task's events fold into a :class:`TaskState`. Each event has a *rank*: terminal events above
everything, then the attempt (the retry count) and the stage within the attempt (sent, received,
started, retried). An event of a lower rank than the state's never changes its status, so events
that arrive late or out of order (several workers, clock skew, two collectors) never move a run
backwards; they may still fill in what the state lacks (the task's name, its arguments).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The most characters of ``task`` the runs table takes (``RunCreate.task``).
TASK_MAX = 64
#: The task name of a run whose naming events (sent, received) were missed.
UNKNOWN_TASK = "celery.unknown"
#: The longest ``log_excerpt`` written; the end of a traceback is kept.
LOG_LIMIT = 16384
#: Prefix of every idempotency key the collector sends.
KEY_PREFIX = "celery:"

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

#: Event type -> (stage within an attempt, status). Terminal events share the top stage.
_EVENTS: dict[str, tuple[int, str]] = {
    "task-sent": (0, QUEUED),
    "task-received": (1, QUEUED),
    "task-started": (2, RUNNING),
    "task-retried": (3, QUEUED),
    "task-succeeded": (9, COMPLETED),
    "task-failed": (9, FAILED),
    "task-rejected": (9, FAILED),
    "task-revoked": (9, CANCELLED),
}
TASK_EVENTS = frozenset(_EVENTS)

Rank = tuple[int, int, int]
NO_RANK: Rank = (-1, -1, -1)


def task_run_key(task_id: str) -> str:
    """The idempotency key of the run of Celery task ``task_id``: the same from every event and
    every collector, so that a task is one run however many times its events are seen."""
    return f"{KEY_PREFIX}{task_id}"


@dataclass(frozen=True)
class MappingOptions:
    """What goes into ``inputs``.

    Args:
        redact: Names of fields dropped from ``kwargs`` (and from dict-shaped ``args`` items).
        max_input_chars: The most characters of ``args`` and of ``kwargs`` kept, each; longer
            values are cut and marked ``truncated``.
    """

    redact: frozenset[str] = frozenset()
    max_input_chars: int = 4096


@dataclass
class TaskState:
    """What the collector knows of one task, and what of it the server has."""

    task_id: str
    name: str | None = None
    status: str = QUEUED
    rank: Rank = NO_RANK
    attempt: int = 0
    retries: int = 0
    started_attempt: int | None = None
    first_seen: datetime | None = None
    started_at: datetime | None = None  # task-started, for the duration of a failure
    finished_at: datetime | None = None
    duration_ms: int | None = None
    log: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    #: The rank last recorded in the client's buffer.
    recorded: Rank = NO_RANK
    #: The rank on the server or in the spool (``NO_RANK``: nothing written yet).
    written: Rank = NO_RANK

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def dirty(self) -> bool:
        return self.rank > self.written

    def task_name(self) -> str:
        """The ``task`` column: the name, or its head and tail around ``…`` when it is longer
        than the column (the whole name is in ``inputs.celery.task``)."""
        name = self.name or UNKNOWN_TASK
        if len(name) <= TASK_MAX:
            return name
        return f"{name[:20]}…{name[-(TASK_MAX - 21) :]}"

    def create_item(self) -> dict[str, Any]:
        """The ``RunCreate`` body of this task as it is now."""
        item: dict[str, Any] = {
            "task": self.task_name(),
            "run_id": self.task_id[:64],
            "status": self.status,
            "idempotency_key": task_run_key(self.task_id),
        }
        started = self.first_seen or self.started_at or self.finished_at
        if started is not None:
            item["started_at"] = started.isoformat()
        item.update(self._final_fields(started))
        inputs = dict(self.inputs)
        celery: dict[str, Any] = dict(inputs.pop("celery", {}))
        if self.name and len(self.name) > TASK_MAX:
            celery["task"] = self.name
        if len(self.task_id) > 64:
            celery["task_id"] = self.task_id
        if self.retries:
            celery["retries"] = self.retries
        if celery:
            inputs["celery"] = celery
        if inputs:
            item["inputs"] = inputs
        return item

    def _final_fields(self, started: datetime | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.log is not None:
            fields["log_excerpt"] = self.log
        if self.terminal and self.finished_at is not None:
            finished = self.finished_at
            if started is not None and finished < started:
                finished = started  # clock skew between hosts: never before the start
            fields["finished_at"] = finished.isoformat()
            if self.duration_ms is not None:
                fields["duration_ms"] = self.duration_ms
        return fields

    # --- folding events ---------------------------------------------------------------------------

    def apply(self, event: dict[str, Any], options: MappingOptions) -> bool:
        """Fold one task event in; whether the status or what the run shows moved forward."""
        kind = str(event.get("type", ""))
        if kind not in _EVENTS:
            return False
        stage, status = _EVENTS[kind]
        when = event_time(event)
        if self.first_seen is None or (when is not None and when < self.first_seen):
            self.first_seen = when
        name = event.get("name")
        if isinstance(name, str) and name and self.name is None:
            self.name = name
        if kind in ("task-sent", "task-received"):
            self._take_inputs(event, options)
            retries = event.get("retries")
            if isinstance(retries, int) and retries > self.attempt:
                self.attempt = retries
                self.retries = max(self.retries, retries)
        terminal = 1 if stage == 9 else 0
        attempt = self.attempt
        if kind in ("task-sent", "task-received") and isinstance(event.get("retries"), int):
            attempt = int(event["retries"])
        elif kind == "task-retried":
            # The retry is published before its event is sent, so the next attempt may be
            # received already: this event belongs to the attempt that started last.
            attempt = self.started_attempt if self.started_attempt is not None else attempt
            self.retries = max(self.retries, attempt + 1)
        rank: Rank = (terminal, 0 if terminal else attempt, stage)
        if kind == "task-started" and rank >= self.rank:
            self.started_at = when or self.started_at
            self.started_attempt = attempt
        if rank <= self.rank:
            return False
        self.rank = rank
        self.status = status
        if kind == "task-retried":
            self.log = _cap_log(f"retry {attempt + 1}: {_failure_text(event)}".rstrip())
        elif kind == "task-succeeded":
            runtime = event.get("runtime")
            if isinstance(runtime, int | float) and runtime >= 0:
                self.duration_ms = round(runtime * 1000)
            if self.retries:
                self.log = f"succeeded after {self.retries} retries"
        elif kind == "task-failed":
            self.log = _cap_log(_failure_text(event))
        elif kind == "task-rejected":
            self.log = "rejected by the worker" + (" (requeued)" if event.get("requeue") else "")
        elif kind == "task-revoked":
            how = "terminated" if event.get("terminated") else "revoked"
            if event.get("expired"):
                how = "expired"
            signum = event.get("signum")
            self.log = f"{how}" + (f" (signal {signum})" if signum else "")
        if terminal:
            self.finished_at = when
            if self.duration_ms is None and when is not None and self.started_at is not None:
                self.duration_ms = max(0, round((when - self.started_at).total_seconds() * 1000))
        return True

    def _take_inputs(self, event: dict[str, Any], options: MappingOptions) -> None:
        for name in ("args", "kwargs"):
            if name in self.inputs or name not in event:
                continue
            value = _inputs_value(event[name], options)
            if value is not None:
                self.inputs[name] = value


def event_time(event: dict[str, Any]) -> datetime | None:
    """When the event happened, as the sending host's clock says (UTC)."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, int | float):
        return None
    try:
        return datetime.fromtimestamp(float(stamp), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _failure_text(event: dict[str, Any]) -> str:
    exception = str(event.get("exception") or "").strip()
    traceback = str(event.get("traceback") or "").rstrip()
    if traceback and exception and exception not in traceback:
        return f"{traceback}\n{exception}"
    return traceback or exception


def _cap_log(text: str) -> str:
    """At most ``LOG_LIMIT`` characters, keeping the end (where a traceback says what failed)."""
    if len(text) <= LOG_LIMIT:
        return text
    return "…" + text[-(LOG_LIMIT - 1) :]


def _inputs_value(raw: Any, options: MappingOptions) -> Any:
    """``args``/``kwargs`` as an event carries them (the worker's ``repr``, or JSON from a
    producer), as JSON when it parses, redacted and capped."""
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            value = raw
    if isinstance(value, tuple):
        value = list(value)
    if options.redact:
        if isinstance(value, str):
            # An unparsed repr may hold a redacted field: keep none of it.
            return {"redacted": True} if any(n in value for n in options.redact) else value
        value = _redact(value, options.redact)
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        value = repr(value)
        text = value
    if len(text) > options.max_input_chars:
        return {"truncated": True, "repr": text[: options.max_input_chars]}
    return value


def _redact(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {str(k): _redact(v, names) for k, v in value.items() if str(k) not in names}
    if isinstance(value, list):
        return [_redact(v, names) for v in value]
    return value
