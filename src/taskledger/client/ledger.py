"""``Ledger``: the sync client, on ``httpx.Client``. Transport, retries and errors come from
:class:`~taskledger.client._base.BaseLedger`; resources hang off it (``ledger.runs``, ...)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import httpx

from taskledger.client import _specs as S
from taskledger.client._base import BaseLedger
from taskledger.client._calls import Call, items_of, pages_of
from taskledger.client.buffer import BufferStats, OnExisting, OnFull, OnSent, RunBuffer
from taskledger.client.errors import LedgerError, error_for
from taskledger.client.heartbeat import Heartbeat
from taskledger.client.resources import (
    Admin,
    Agents,
    ApiKeys,
    Connections,
    Instructions,
    Projects,
    Rooms,
    Runs,
    Sessions,
    Tasks,
    Users,
)
from taskledger.client.run import RunContext, Tracker, run_fields
from taskledger.client.spool import Spool
from taskledger.schemas.auth import Me, Token

T = TypeVar("T")


class Ledger(BaseLedger):
    """The sync client. Arguments as :class:`~taskledger.client._base.BaseLedger`, plus:

    Args:
        buffer: Buffered mode: :meth:`record` (and ``with ledger.run``) queue runs, sent in
            ``runs:batch`` requests by a background thread.
        flush_at: Send a batch once this many runs are queued (at most 1000).
        flush_interval: Send what is queued at least this often, in seconds.
        spool_dir: Keep batches the server did not take in this directory, and send them, in
            order, once it answers again, also after this process restarts.
        spool_max_bytes: The most unsent runs kept (on disk, or in memory without a spool).
        on_full: When that is reached: ``"raise"`` :class:`SpoolFull`, or ``"drop"`` new runs
            (counted in :meth:`buffer_stats`).
        on_existing: ``"advance"``: a recorded run whose key the server has already moves that
            run forward when its status is at a later stage (record a run's whole state each
            time it changes); ``"keep"`` (the default) leaves the stored run as it is.
        on_sent: Called in the sender thread with the items of each batch the server took and
            its :class:`~taskledger.schemas.runs.BatchResult`, before the next batch goes.
        transport: An ``httpx`` transport, for tests or special networking.
    """

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
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, api_key, **options)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers(), timeout=self.timeout, transport=transport
        )
        self.projects = Projects(self)
        self.agents = Agents(self)
        self.api_keys = ApiKeys(self)
        self.rooms = Rooms(self)
        self.tasks = Tasks(self)
        self.runs = Runs(self)
        self.sessions = Sessions(self)
        self.connections = Connections(self)
        self.instructions = Instructions(self)
        self.users = Users(self)
        self.admin = Admin(self)
        self.token: Token | None = None  # set by login()
        self._buffer: RunBuffer | None = None
        if buffer:
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
    def login(cls, url: str | None, email: str, password: str, **options: Any) -> Ledger:
        """A client acting as the user ``email``: it logs in with the password
        (``POST /api/v1/auth/token``) and sends the bearer token it gets from then on.
        ``options`` are the constructor's. The token expires after the server's
        ``TASKLEDGER_JWT_EXPIRE_MINUTES`` (``ledger.token.expires_in`` seconds): log in
        again then. A wrong password raises :class:`~taskledger.client.Unauthorized`."""
        ledger = cls(url, "", **options)
        try:
            ledger._use_token(ledger._send(S.login(email, password)))
        except BaseException:
            ledger.close()
            raise
        return ledger

    def _use_token(self, token: Token) -> None:
        self.token = token
        self.api_key = token.access_token
        self._http.headers["Authorization"] = f"Bearer {token.access_token}"

    # --- transport --------------------------------------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        request = self._request(self._http, call)
        attempt = 0
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if not self._retry_error(call, exc, attempt):
                    raise self._unreachable(call, exc, attempt + 1) from exc
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.is_error and self._retry_status(call, response, attempt):
                time.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            return self._answer(call, response)

    def _send_batch(self, content: bytes) -> Any:
        # The buffer retries on its own schedule (and spools meanwhile): one attempt here.
        call = Call("POST", "/api/v1/runs:batch", lambda r: r.content, content=content)
        request = self._request(self._http, call)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise self._unreachable(call, exc, 1) from exc
        if response.is_error:
            raise error_for(response)
        return response.content

    def _iterate(self, first: Call[Any]) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            items, cursor = items_of(self._send(pages_of(first, cursor)))
            yield from items
            if cursor is None:
                return

    def _stream(self, call: Call[Any], each: Callable[[httpx.Response], T]) -> T:
        request = self._request(self._http, call)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if not self._retry_error(call, exc, attempt):
                    raise self._unreachable(call, exc, attempt + 1) from exc
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            try:
                if response.is_error:
                    response.read()
                    if self._retry_status(call, response, attempt):
                        time.sleep(self._delay(attempt, response))
                        attempt += 1
                        continue
                    raise error_for(response)
                return each(response)
            finally:
                response.close()

    def _download(self, call: Call[Any], handle: IO[bytes]) -> int:
        def write(response: httpx.Response) -> int:
            written = 0
            for chunk in response.iter_bytes():
                handle.write(chunk)
                written += len(chunk)
            return written

        return self._stream(call, write)

    def _lines(self, call: Call[Any]) -> Iterator[str]:
        request = self._request(self._http, call)
        with self._http.stream(request.method, request.url, headers=request.headers) as response:
            if response.is_error:
                response.read()
                raise error_for(response)
            yield from response.iter_lines()

    # --- recording --------------------------------------------------------------------------------

    def me(self) -> Me:
        """Who the credentials are: a user, an API key (with its project), or the admin key."""
        return self._send(S.me())

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
        """``with ledger.run("embed", inputs={...}) as run:`` records the run ``running`` on
        entry, then ``completed`` on exit, or ``failed`` with the exception (type, message and
        the end of its traceback, in at most ``log_limit`` characters of ``log_excerpt``) when
        one escapes, re-raised. In buffered mode one final record is queued on exit instead."""
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
        """A decorator recording each call of a sync or async function as a run (named after
        the function unless ``task`` is given), with its arguments as ``inputs`` (or what the
        ``inputs`` callable makes of them; none with ``capture_args=False``)."""
        return Tracker(self, task, inputs=inputs, capture_args=capture_args, fields=fields)

    def connection(
        self,
        agent: Any,
        *,
        session: Any = None,
        interval: float = 30.0,
        reason: str = "closed by the client",
    ) -> Heartbeat:
        """``with ledger.connection(agent_id) as conn:`` opens a connection, sends a heartbeat
        every ``interval`` seconds from a background thread, and closes it on exit with
        ``reason`` (or the exception's type when one escapes)."""
        return Heartbeat(self, agent, session=session, interval=interval, reason=reason)

    def record(self, given: Any = None, /, **fields: Any) -> str:
        """Buffered mode: queue one run (a ``RunCreate``, a dict or keyword fields); returns its
        idempotency key. It is sent with the next batch."""
        if self._buffer is None:
            raise LedgerError("record() needs Ledger(..., buffer=True); use runs.create().")
        key, encoded = S.encode_run(given, fields)
        self._buffer.add(encoded)
        return key

    @property
    def buffered(self) -> bool:
        return self._buffer is not None

    def buffer_stats(self) -> BufferStats:
        """Counters of buffered mode: recorded, sent, spooled, dropped, rejected, waiting."""
        if self._buffer is None:
            raise LedgerError("This client is not buffered.")
        return self._buffer.snapshot()

    def flush(self, timeout: float | None = None) -> bool:
        """Buffered mode: send what is queued and wait until the backlog is empty; whether it
        all went within ``timeout`` seconds (``None``: as long as it takes)."""
        return True if self._buffer is None else self._buffer.flush(timeout)

    def persist(self, timeout: float | None = None) -> bool:
        """Buffered mode: wait until what is queued is on the server or in the spool on disk
        (without a spool: on the server); whether it is within ``timeout`` seconds."""
        return True if self._buffer is None else self._buffer.persist(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush the buffer (what cannot be sent stays in the spool) and close connections."""
        try:
            if self._buffer is not None:
                self._buffer.close(timeout)
        finally:
            self._http.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
