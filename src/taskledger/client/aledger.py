"""``AsyncLedger``: the async client, on ``httpx.AsyncClient``; the same resources, options and
errors as :class:`~taskledger.client.Ledger`, awaited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import IO, Any, TypeVar

import httpx

from taskledger.client import _specs as S
from taskledger.client._base import BaseLedger
from taskledger.client._calls import Call, items_of, pages_of
from taskledger.client.aresources import (
    AsyncAdmin,
    AsyncAgents,
    AsyncApiKeys,
    AsyncConnections,
    AsyncInstructions,
    AsyncProjects,
    AsyncRooms,
    AsyncRuns,
    AsyncSessions,
    AsyncTasks,
    AsyncUsers,
)
from taskledger.client.buffer import BufferStats, OnExisting, OnFull, OnSent, RunBuffer
from taskledger.client.errors import LedgerError, error_for
from taskledger.client.heartbeat import AsyncHeartbeat
from taskledger.client.run import RunContext, Tracker, run_fields
from taskledger.client.spool import Spool
from taskledger.schemas.auth import Me, Token

T = TypeVar("T")


class AsyncLedger(BaseLedger):
    """The async client: ``async with AsyncLedger(url, key) as ledger:``. Arguments as
    :class:`~taskledger.client.Ledger`. In buffered mode, :meth:`record` only queues (it does not
    block); the batches go from a background thread of their own."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        buffer: bool = False,
        flush_at: int = 500,
        flush_interval: float = 1.0,
        spool_dir: str | None = None,
        spool_max_bytes: int = 256 * 2**20,
        on_full: OnFull = "raise",
        on_existing: OnExisting = "keep",
        on_sent: OnSent | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, api_key, **options)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(), timeout=self.timeout, transport=transport
        )
        self.projects = AsyncProjects(self)
        self.agents = AsyncAgents(self)
        self.api_keys = AsyncApiKeys(self)
        self.rooms = AsyncRooms(self)
        self.tasks = AsyncTasks(self)
        self.runs = AsyncRuns(self)
        self.sessions = AsyncSessions(self)
        self.connections = AsyncConnections(self)
        self.instructions = AsyncInstructions(self)
        self.users = AsyncUsers(self)
        self.admin = AsyncAdmin(self)
        self.token: Token | None = None  # set by login()
        self._buffer: RunBuffer | None = None
        self._batch_http: httpx.Client | None = None
        if buffer:
            self._batch_http = httpx.Client(
                base_url=self.url, headers=self._headers(), timeout=self.timeout
            )
            self._buffer = RunBuffer(
                self._send_batch,
                Spool(spool_dir) if spool_dir is not None else None,
                flush_at=flush_at,
                flush_interval=flush_interval,
                max_bytes=spool_max_bytes,
                on_full=on_full,
                backoff=self.backoff,
                max_backoff=self.max_backoff,
                project_id=self.project_id,
                on_existing=on_existing,
                on_sent=on_sent,
            )
        elif spool_dir is not None:
            raise ValueError("spool_dir needs buffer=True")

    @classmethod
    async def login(cls, url: str | None, email: str, password: str, **options: Any) -> AsyncLedger:
        """``ledger = await AsyncLedger.login(url, email, password)``; see
        :meth:`Ledger.login <taskledger.client.Ledger.login>`."""
        ledger = cls(url, "", **options)
        try:
            ledger._use_token(await ledger._send(S.login(email, password)))
        except BaseException:
            await ledger.aclose()
            raise
        return ledger

    def _use_token(self, token: Token) -> None:
        self.token = token
        self.api_key = token.access_token
        for http in (self._http, self._batch_http):
            if http is not None:
                http.headers["Authorization"] = f"Bearer {token.access_token}"

    # --- transport --------------------------------------------------------------------------------

    async def _send(self, call: Call[T]) -> T:
        request = self._request(self._http, call)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if not self._retry_error(call, exc, attempt):
                    raise self._unreachable(call, exc, attempt + 1) from exc
                await asyncio.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.is_error and self._retry_status(call, response, attempt):
                await asyncio.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            return self._answer(call, response)

    def _send_batch(self, content: bytes) -> bytes:
        # Runs in the buffer's thread, on a sync client of its own; one attempt per call.
        assert self._batch_http is not None
        call = Call("POST", "/api/v1/runs:batch", lambda r: r.content, content=content)
        try:
            response = self._batch_http.send(self._request(self._batch_http, call))
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc, 1) from exc
        if response.is_error:
            raise error_for(response)
        return response.content

    async def _iterate(self, first: Call[Any]) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            items, cursor = items_of(await self._send(pages_of(first, cursor)))
            for item in items:
                yield item
            if cursor is None:
                return

    async def _stream(self, call: Call[Any]) -> httpx.Response:
        request = self._request(self._http, call)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if not self._retry_error(call, exc, attempt):
                    raise self._unreachable(call, exc, attempt + 1) from exc
                await asyncio.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if not response.is_error:
                return response
            await response.aread()
            await response.aclose()
            if not self._retry_status(call, response, attempt):
                raise error_for(response)
            await asyncio.sleep(self._delay(attempt, response))
            attempt += 1

    async def _download(self, call: Call[Any], handle: IO[bytes]) -> int:
        response = await self._stream(call)
        written = 0
        try:
            async for chunk in response.aiter_bytes():
                handle.write(chunk)
                written += len(chunk)
        finally:
            await response.aclose()
        return written

    async def _lines(self, call: Call[Any]) -> AsyncIterator[str]:
        response = await self._stream(call)
        try:
            async for line in response.aiter_lines():
                yield line
        finally:
            await response.aclose()

    # --- recording --------------------------------------------------------------------------------

    async def me(self) -> Me:
        return await self._send(S.me())

    def run(
        self,
        task: str,
        *,
        inputs: Any = None,
        agent: Any = None,
        task_id: uuid.UUID | str | None = None,
        run_id: str | None = None,
        log_limit: int = 16384,
        **fields: Any,
    ) -> RunContext:
        """``async with ledger.run("embed", inputs={...}) as run:``; see :meth:`Ledger.run`."""
        data = run_fields(task, inputs, agent, task_id, run_id, fields)
        return RunContext(self, data, log_limit=log_limit)

    def track(
        self,
        task: str | None = None,
        *,
        inputs: Callable[..., Any] | None = None,
        capture_args: bool = True,
        **fields: Any,
    ) -> Tracker:
        """A decorator for async functions; see :meth:`Ledger.track`."""
        return Tracker(self, task, inputs=inputs, capture_args=capture_args, fields=fields)

    def connection(
        self,
        agent: Any,
        *,
        session: Any = None,
        interval: float = 30.0,
        reason: str = "closed by the client",
    ) -> AsyncHeartbeat:
        """``async with ledger.connection(agent_id) as conn:``, heartbeats from an asyncio task."""
        return AsyncHeartbeat(self, agent, session=session, interval=interval, reason=reason)

    def record(self, given: Any = None, /, **fields: Any) -> str:
        """Buffered mode: queue one run; returns its idempotency key (never blocks)."""
        if self._buffer is None:
            raise LedgerError("record() needs AsyncLedger(..., buffer=True); use runs.create().")
        key, encoded = S.encode_run(given, fields)
        self._buffer.add(encoded)
        return key

    @property
    def buffered(self) -> bool:
        return self._buffer is not None

    def buffer_stats(self) -> BufferStats:
        if self._buffer is None:
            raise LedgerError("This client is not buffered.")
        return self._buffer.snapshot()

    async def flush(self, timeout: float | None = None) -> bool:
        """Buffered mode: send what is queued and wait (in a thread) until it is delivered."""
        if self._buffer is None:
            return True
        return await asyncio.to_thread(self._buffer.flush, timeout)

    async def persist(self, timeout: float | None = None) -> bool:
        """Buffered mode: wait (in a thread) until what is queued is on the server or in the
        spool on disk; see :meth:`Ledger.persist <taskledger.client.Ledger.persist>`."""
        if self._buffer is None:
            return True
        return await asyncio.to_thread(self._buffer.persist, timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Flush the buffer (what cannot be sent stays in the spool) and close connections."""
        try:
            if self._buffer is not None:
                await asyncio.to_thread(self._buffer.close, timeout)
        finally:
            if self._batch_http is not None:
                self._batch_http.close()
            await self._http.aclose()

    async def __aenter__(self) -> AsyncLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
