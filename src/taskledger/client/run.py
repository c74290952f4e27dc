"""``with ledger.run(...) as run:`` and ``@ledger.track(...)``: a run recorded around a block or
a function, ``running`` on entry and ``completed``, ``failed`` or ``cancelled`` on exit, with
the exception's type, message and the end of its traceback in ``log_excerpt``."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from taskledger.client import _specs as S
from taskledger.client.errors import LedgerError
from taskledger.schemas.runs import RunRead

if TYPE_CHECKING:
    from taskledger.client.aledger import AsyncLedger
    from taskledger.client.ledger import Ledger

log = logging.getLogger("taskledger.client")
F = TypeVar("F", bound=Callable[..., Any])

#: Exceptions that mean the work was stopped rather than that it failed.
_CANCELLED = (KeyboardInterrupt, asyncio.CancelledError, GeneratorExit, SystemExit)


def _id(value: Any) -> str | None:
    """An id from a UUID, a string, or a record that has an ``id``."""
    if value is None:
        return None
    return str(getattr(value, "id", value))


def run_fields(
    task: str,
    inputs: Any,
    agent: Any,
    task_id: Any,
    run_id: str | None,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    data: dict[str, Any] = {"task": task, **fields}
    if inputs is not None:
        data["inputs"] = inputs
    if agent is not None:
        data["agent_id"] = _id(agent)
    if task_id is not None:
        data["task_id"] = _id(task_id)
    if run_id is not None:
        data["run_id"] = run_id
    return data


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON the server accepts: containers kept to a depth of 16, anything that is
    not JSON by itself as its ``repr`` (shortened)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth < 16 and isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if depth < 16 and isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime | uuid.UUID):
        return str(value)
    text = repr(value)
    return text if len(text) <= 1000 else text[:999] + "…"


def excerpt(lines: list[str], error: BaseException | None, limit: int) -> str | None:
    """The log excerpt: the run's own lines, then the traceback, kept within ``limit``
    characters by dropping from the start, never the final ``Type: message`` line."""
    text = "\n".join(lines)
    if error is None:
        return (text if len(text) <= limit else "…" + text[-(limit - 1) :]) or None
    last = "".join(traceback.format_exception_only(type(error), error)).strip()
    if len(last) > limit // 2:
        last = last[: limit // 2 - 1] + "…"
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    stack = stack.rstrip("\n")
    stack = stack[: stack.rfind("\n")] if "\n" in stack else ""  # without its final line
    body = f"{text}\n{stack}" if text else stack
    room = limit - len(last) - 1
    if len(body) > room:
        body = "…" + body[-(room - 1) :] if room > 1 else ""
    return f"{body}\n{last}" if body else last


class Run:
    """The run of a ``with ledger.run(...)`` block: its record (``None`` in buffered mode, where
    nothing is sent until the block ends), and what to add to it before it ends."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.idempotency_key: str = data["idempotency_key"]
        self.task: str = data["task"]
        self.record: RunRead | None = None
        self._lines: list[str] = []
        self._changes: dict[str, Any] = {}

    @property
    def id(self) -> int | None:
        return self.record.id if self.record is not None else None

    def log(self, text: str) -> None:
        """Append a line to the run's ``log_excerpt`` (sent when the run ends)."""
        self._lines.append(text)

    def output(self, uri: str) -> None:
        """Set the run's ``outputs_uri``."""
        self._changes["outputs_uri"] = uri

    def approve(self, state: str = "approved", approver: str | None = None) -> None:
        """Set the run's ``approval_state`` (and ``approver``)."""
        self._changes["approval_state"] = state
        if approver is not None:
            self._changes["approver"] = approver


class RunContext:
    """What ``ledger.run(...)`` returns: a context manager, ``with`` for :class:`Ledger`,
    ``async with`` for :class:`AsyncLedger`."""

    def __init__(self, client: Ledger | AsyncLedger, data: dict[str, Any], *, log_limit: int):
        if log_limit < 64:
            raise ValueError("log_limit is at least 64 characters")
        self._client = client
        self._data = {**data, "idempotency_key": data.get("idempotency_key") or S.new_key()}
        self._limit = log_limit
        self._run = Run(self._data)
        self._clock = 0.0

    def _opening(self) -> dict[str, Any]:
        self._clock = time.monotonic()
        self._data.setdefault("started_at", datetime.now(UTC))
        return {**self._data, "status": "running"}

    def _closing(self, error: BaseException | None) -> dict[str, Any]:
        status = "completed"
        if error is not None:
            status = "cancelled" if isinstance(error, _CANCELLED) else "failed"
        changes: dict[str, Any] = {
            "status": status,
            "finished_at": datetime.now(UTC),
            "duration_ms": int((time.monotonic() - self._clock) * 1000),
            **self._run._changes,
        }
        text = excerpt(self._run._lines, error, self._limit)
        if text is not None:
            changes["log_excerpt"] = text
        return changes

    def _failed_to_finish(self, exc: LedgerError, error: BaseException | None) -> None:
        if error is None:
            raise exc
        # The block's own exception matters more; it is re-raised, and this one logged.
        log.error("taskledger: could not record the end of run %s: %s", self._run.task, exc)

    def __enter__(self) -> Run:
        from taskledger.client.ledger import Ledger

        client = self._client
        if not isinstance(client, Ledger):
            raise TypeError("AsyncLedger.run() is used with `async with`")
        opening = self._opening()
        if not client.buffered:
            self._run.record = client._send(S.run_create(opening, {}))
        return self._run

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from taskledger.client.ledger import Ledger

        client = self._client
        assert isinstance(client, Ledger)
        changes = self._closing(error)
        try:
            if client.buffered:
                client.record({**self._data, **changes})
            else:
                assert self._run.record is not None
                self._run.record = client._send(S.run_update(self._run.record.id, None, changes))
        except LedgerError as exc:
            self._failed_to_finish(exc, error)

    async def __aenter__(self) -> Run:
        from taskledger.client.aledger import AsyncLedger

        client = self._client
        if not isinstance(client, AsyncLedger):
            raise TypeError("Ledger.run() is used with `with`")
        opening = self._opening()
        if not client.buffered:
            self._run.record = await client._send(S.run_create(opening, {}))
        return self._run

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from taskledger.client.aledger import AsyncLedger

        client = self._client
        assert isinstance(client, AsyncLedger)
        changes = self._closing(error)
        try:
            if client.buffered:
                client.record({**self._data, **changes})
            else:
                assert self._run.record is not None
                call = S.run_update(self._run.record.id, None, changes)
                self._run.record = await client._send(call)
        except LedgerError as exc:
            self._failed_to_finish(exc, error)


class Tracker:
    """The decorator ``ledger.track(...)`` returns."""

    def __init__(
        self,
        client: Ledger | AsyncLedger,
        task: str | None,
        *,
        inputs: Callable[..., Any] | None,
        capture_args: bool,
        fields: Mapping[str, Any],
    ) -> None:
        self._client = client
        self._task = task
        self._inputs = inputs
        self._capture = capture_args
        self._fields = dict(fields)

    def _make_inputs(self, signature: inspect.Signature, args: Any, kwargs: Any) -> Any:
        if self._inputs is not None:
            return jsonable(self._inputs(*args, **kwargs))
        if not self._capture:
            return None
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return None  # the call itself will fail, and be recorded as failed
        bound.apply_defaults()
        return jsonable(dict(bound.arguments))

    def __call__(self, fn: F) -> F:
        from taskledger.client.aledger import AsyncLedger

        name = self._task or fn.__qualname__
        signature = inspect.signature(fn)
        client = self._client

        def context(args: Any, kwargs: Any) -> RunContext:
            inputs = self._make_inputs(signature, args, kwargs)
            return client.run(name, inputs=inputs, **self._fields)

        if inspect.iscoroutinefunction(fn):
            if isinstance(client, AsyncLedger):

                @functools.wraps(fn)
                async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                    async with context(args, kwargs):
                        return await fn(*args, **kwargs)

                return tracked_async  # type: ignore[return-value]

            @functools.wraps(fn)
            async def tracked_in_thread(*args: Any, **kwargs: Any) -> Any:
                # A sync client in async code: its requests go to a thread, off the event loop.
                ctx = context(args, kwargs)
                await asyncio.to_thread(ctx.__enter__)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    await asyncio.to_thread(ctx.__exit__, type(error), error, error.__traceback__)
                    raise
                await asyncio.to_thread(ctx.__exit__, None, None, None)
                return result

            return tracked_in_thread  # type: ignore[return-value]

        if isinstance(client, AsyncLedger):
            raise TypeError(f"AsyncLedger.track decorates async functions; {name} is not one")

        @functools.wraps(fn)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with context(args, kwargs):
                return fn(*args, **kwargs)

        return tracked  # type: ignore[return-value]
