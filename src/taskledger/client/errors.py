"""The exceptions of the Python client: one tree, keyed by the HTTP status the server answered.

::

    LedgerError                  base of them all (``.status``, ``.detail``, ``.response``)
    ├── LedgerConnectionError    the server could not be reached (after the retries)
    ├── SpoolFull                buffered mode: the spool is full and ``on_full="raise"``
    └── APIStatusError           the server answered an error status
        ├── BadRequest           400  a malformed request, such as a cursor of other filters
        ├── Unauthorized         401  missing or invalid credentials
        ├── Forbidden            403  the credentials may not do this
        ├── NotFound             404  no such record, or not yours to see
        ├── Conflict             409  clashes with the current state (``.blockers``)
        ├── ValidationError      422  invalid input (``.errors``, one per field)
        ├── RateLimited          429  too many requests lately (``.retry_after``)
        └── ServerError          5xx  the server failed or is unavailable (``.retry_after``)
"""

from __future__ import annotations

from typing import Any

import httpx


class LedgerError(Exception):
    """Base class of every error the client raises.

    Attributes:
        status: The HTTP status, when the server answered.
        detail: The ``detail`` of the server's answer (text, or a structure), else a message.
        response: The ``httpx.Response``, when there was one.
    """

    status: int | None = None

    def __init__(
        self, message: str, *, detail: Any = None, response: httpx.Response | None = None
    ) -> None:
        super().__init__(message)
        self.detail = detail if detail is not None else message
        self.response = response
        if response is not None:
            self.status = response.status_code


class LedgerConnectionError(LedgerError):
    """The server could not be reached, or broke off the exchange, on every attempt."""


class SpoolFull(LedgerError):
    """Buffered mode: the spool holds ``spool_max_bytes`` already and ``on_full="raise"``."""


class APIStatusError(LedgerError):
    """The server answered with an error status; the subclass says which kind."""


class BadRequest(APIStatusError):
    """400: the request is malformed (a cursor that does not decode, or of other filters)."""


class Unauthorized(APIStatusError):
    """401: no credentials, or credentials the server does not know (a revoked key)."""


class Forbidden(APIStatusError):
    """403: the credentials are known and may not do this."""


class NotFound(APIStatusError):
    """404: no such record, or a record of a project the credentials cannot see."""


class Conflict(APIStatusError):
    """409: the request clashes with the current state, or a safeguard refused it.

    Attributes:
        blockers: What stands in the way, when the server says: the unfinished dependencies of
            a task that cannot start (``blocked_by``), the tasks of a cycle (``cycle``), the
            tasks that depend on one being deleted (``dependents``); else an empty list.
    """

    @property
    def blockers(self) -> list[Any]:
        if isinstance(self.detail, dict):
            for key in ("blocked_by", "cycle", "dependents"):
                value = self.detail.get(key)
                if isinstance(value, list):
                    return value
        return []


class ValidationError(APIStatusError):
    """422: the input is not acceptable.

    Attributes:
        errors: One entry per problem, as the server lists them: ``{"loc": [...], "msg": ...,
            "type": ...}``, where ``loc`` says where (``["body", "runs", 3, "status"]``).
    """

    @property
    def errors(self) -> list[dict[str, Any]]:
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return [{"loc": [], "msg": str(self.detail), "type": "value_error"}]

    def fields(self) -> dict[str, list[str]]:
        """The messages by field: the dotted ``loc`` after its first part (``runs.3.status``)."""
        out: dict[str, list[str]] = {}
        for error in self.errors:
            loc = [str(part) for part in error.get("loc", [])][1:]
            out.setdefault(".".join(loc), []).append(str(error.get("msg", "")))
        return out


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from this server; the backoff applies instead


class RateLimited(APIStatusError):
    """429: too much of this lately (failed logins, deletions); ``retry_after`` seconds says
    when to try again, when the server says."""

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.response)


class ServerError(APIStatusError):
    """5xx: the server failed (500) or something it needs is unavailable now (503, with
    ``retry_after``)."""

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.response)


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
}


def error_for(response: httpx.Response) -> APIStatusError:
    """The exception for an error ``response`` (status 400 and above)."""
    try:
        detail: Any = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else APIStatusError
    message = detail.get("message", detail) if isinstance(detail, dict) else detail
    if isinstance(message, list):
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
            for e in message
            if isinstance(e, dict)
        )
    text = (
        f"{response.status_code} {response.request.method} {response.request.url.path}: {message}"
    )
    return cls(text, detail=detail, response=response)
