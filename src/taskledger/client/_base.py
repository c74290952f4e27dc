"""What the sync and the async client share: configuration (URL, credentials from the
environment), the headers, when to retry and how long to wait, and reading answers.

The retry policy, like openai-python's: exponential backoff with full jitter, honouring
``Retry-After``, and the same request (so the same idempotency key) on every attempt. A request
is retried when it never reached the server (a refused or timed-out connection), or when the
server answered 429 or 503, which say that nothing was done; a request the server may have acted
on (a broken-off exchange, another 5xx) is retried only when repeating it is safe: reads,
updates, heartbeats, and run creates, which carry an idempotency key. A 4xx other than 429 is
never retried.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any, TypeVar

import httpx

from taskledger.client._calls import Call, Params, text
from taskledger.client.errors import LedgerError, error_for

T = TypeVar("T")

#: Environment variables read when the constructor is not given a URL or a key.
URL_ENV = "TASKLEDGER_URL"
KEY_ENV = "TASKLEDGER_API_KEY"
#: The longest a ``Retry-After`` is honoured for, in seconds.
MAX_RETRY_AFTER = 60.0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("taskledger")
    except Exception:  # not installed (a checkout on sys.path): say so rather than fail
        return "unknown"


class BaseLedger:
    """Configuration and policy of a client; :class:`Ledger` and :class:`AsyncLedger` add the
    transport.

    Args:
        url: The server, ``http://host:port``; default ``TASKLEDGER_URL``.
        api_key: A project API key (``tl_...``) or a user's token; default
            ``TASKLEDGER_API_KEY``. Sent as ``Authorization: Bearer``.
        admin_key: The server's admin key, for admin routes (sent as ``X-Admin-Key``).
        project_id: The project to act in when the credentials are a user's (an API key
            implies its own): added to creates and lists that do not name one.
        timeout: Seconds per request (connect, read, write, pool), or an ``httpx.Timeout``.
        retries: How many times a failed request is tried again (0: never).
        backoff: The first retry's delay, in seconds; each later one doubles, up to
            ``max_backoff``, and each is jittered (a random share of it).
        max_backoff: The longest delay between two attempts (not counting ``Retry-After``).
        headers: Extra headers for every request.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        admin_key: str | None = None,
        project_id: uuid.UUID | str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        url = url or os.environ.get(URL_ENV)
        if not url:
            raise LedgerError(f"No server URL: pass url= or set {URL_ENV}.")
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff cannot be negative")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        self.admin_key = admin_key
        self.project_id = str(project_id) if project_id is not None else None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._extra_headers = dict(headers or {})

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"taskledger-client/{_version()}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.admin_key:
            headers["X-Admin-Key"] = self.admin_key
        headers.update(self._extra_headers)
        return headers

    def _scoped(self, call: Call[Any]) -> tuple[Params, Any]:
        """The query and the body of ``call``, with the default project where it belongs."""
        params, json = call.params, call.json
        if self.project_id is None or call.scope is None:
            return params, json
        if call.scope == "query" and not any(k == "project_id" for k, _ in params):
            params = [*params, ("project_id", text(self.project_id))]
        elif call.scope == "body" and isinstance(json, dict) and json.get("project_id") is None:
            json = {**json, "project_id": self.project_id}
        return params, json

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        params, json = self._scoped(call)
        headers = dict(call.headers)
        if call.content is not None:
            headers.setdefault("Content-Type", "application/json")
            return http.build_request(
                call.method, call.path, params=params, content=call.content, headers=headers
            )
        return http.build_request(call.method, call.path, params=params, json=json, headers=headers)

    # --- the retry policy -------------------------------------------------------------------------

    def _retry_error(self, call: Call[Any], exc: httpx.TransportError, attempt: int) -> bool:
        if attempt >= self.retries:
            return False
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return never_sent or call.idempotent

    def _retry_status(self, call: Call[Any], response: httpx.Response, attempt: int) -> bool:
        if attempt >= self.retries:
            return False
        status = response.status_code
        if status in (429, 503):
            return True
        return status >= 500 and call.idempotent

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the server's ``Retry-After`` when it
        gives one, else exponential backoff with full jitter."""
        if response is not None:
            value = response.headers.get("Retry-After")
            if value is not None:
                try:
                    return min(max(float(value), 0.0), MAX_RETRY_AFTER)
                except ValueError:
                    pass
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        jitter: float = 0.5 + random.random() / 2
        return ceiling * jitter  # jitter, not a secret

    @staticmethod
    def _answer(call: Call[T], response: httpx.Response) -> T:
        if response.is_error:
            raise error_for(response)
        return call.parse(response)

    @staticmethod
    def _unreachable(call: Call[Any], exc: httpx.TransportError, attempts: int) -> LedgerError:
        from taskledger.client.errors import LedgerConnectionError

        return LedgerConnectionError(
            f"{call.method} {call.path}: {type(exc).__name__}: {exc} "
            f"(after {attempts} attempt{'s' if attempts != 1 else ''})"
        )
