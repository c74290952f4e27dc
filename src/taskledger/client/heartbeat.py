"""``with ledger.connection(agent) as conn:``: an agent connection kept alive by heartbeats from
a background thread (``Ledger``) or an asyncio task (``AsyncLedger``), closed on exit.

A heartbeat that fails (the server unreachable for a while) is logged and tried again at the
next interval; the connection stays open on the server until it is closed or expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from taskledger.client import _specs as S
from taskledger.client.errors import Conflict, LedgerError
from taskledger.schemas.connections import ConnectionRead

if TYPE_CHECKING:
    from taskledger.client.aledger import AsyncLedger
    from taskledger.client.ledger import Ledger

log = logging.getLogger("taskledger.client")


class _Connection:
    def __init__(self, agent: Any, session: Any, interval: float, reason: str) -> None:
        if interval <= 0:
            raise ValueError("interval is a positive number of seconds")
        self.agent_id = str(getattr(agent, "id", agent))
        self.session_id = None if session is None else str(getattr(session, "id", session))
        self.interval = interval
        self.reason = reason
        #: The connection as last answered by the server (opened, then each heartbeat).
        self.record: ConnectionRead | None = None
        #: Heartbeats sent, and those that failed.
        self.beats = 0
        self.failures = 0

    @property
    def id(self) -> int:
        assert self.record is not None, "the connection is not open"
        return self.record.id

    def _open_call(self) -> Any:
        fields: dict[str, Any] = {"agent_id": self.agent_id}
        if self.session_id is not None:
            fields["session_id"] = self.session_id
        return S.connection_open(None, fields)

    def _reason(self, error: BaseException | None) -> str:
        if error is None:
            return self.reason
        return f"{type(error).__name__}: {error}"[:255] or self.reason

    def _beat_failed(self, exc: LedgerError) -> bool:
        """Count a failed heartbeat; whether to stop (the connection is closed on the server)."""
        self.failures += 1
        log.warning("taskledger: heartbeat of connection %s failed: %s", self.id, exc)
        return isinstance(exc, Conflict)


class Heartbeat(_Connection):
    """A connection with heartbeats from a daemon thread (see the module docstring)."""

    def __init__(self, client: Ledger, agent: Any, **options: Any) -> None:
        super().__init__(agent, options.pop("session"), **options)
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.record = self._client._send(S.connection_heartbeat(self.id))
                self.beats += 1
            except LedgerError as exc:
                if self._beat_failed(exc):
                    return

    def __enter__(self) -> Heartbeat:
        self.record = self._client._send(self._open_call())
        self._thread = threading.Thread(target=self._beat, name="taskledger-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.record = self._client._send(S.connection_close(self.id, self._reason(error)))
        except LedgerError as exc:
            if error is None:
                raise
            log.error("taskledger: could not close connection %s: %s", self.id, exc)


class AsyncHeartbeat(_Connection):
    """A connection with heartbeats from an asyncio task."""

    def __init__(self, client: AsyncLedger, agent: Any, **options: Any) -> None:
        super().__init__(agent, options.pop("session"), **options)
        self._client = client
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.record = await self._client._send(S.connection_heartbeat(self.id))
                self.beats += 1
            except LedgerError as exc:
                if self._beat_failed(exc):
                    return

    async def __aenter__(self) -> AsyncHeartbeat:
        self.record = await self._client._send(self._open_call())
        self._task = asyncio.create_task(self._beat(), name="taskledger-heartbeat")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            self.record = await self._client._send(S.connection_close(self.id, self._reason(error)))
        except LedgerError as exc:
            if error is None:
                raise
            log.error("taskledger: could not close connection %s: %s", self.id, exc)
