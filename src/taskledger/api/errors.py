"""Turns exceptions into ``{"detail": ...}`` responses: ours by kind, anything else a bare 500.

A :class:`~taskledger.errors.TaskledgerError` carries an :class:`~taskledger.errors.ErrorKind`;
:data:`HTTP_STATUS` is the one table from kind to status. On top of the status: a 401 says
``WWW-Authenticate: Bearer``, and an error that knows when to try again (``retry_after``) sends
``Retry-After``. The database's own errors map here too: a lost uniqueness race is a 409, a value
the database cannot hold a 422, a database busy or down a 503 with ``Retry-After``.

A 500 never carries a traceback or internal message; the log gets the full exception. Every 422
has one shape, the validation-error list ``[{"loc": [...], "msg": ..., "type": ...}]``, whether
the schemas or a service refused the input; it never echoes the input back (a password, or a
value nested too deeply to encode). A 409 may carry an object as its ``detail`` (a cycle, the
blockers of a task). A 405 names every method the path allows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from taskledger.api.routing import MethodIndex
from taskledger.errors import ErrorKind, TaskledgerError, ValidationFailed

log = logging.getLogger(__name__)


#: The HTTP status of each kind of error: the one place that knows it.
HTTP_STATUS: Mapping[ErrorKind, int] = {
    ErrorKind.INTERNAL: 500,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.INVALID: 422,
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.REFUSED: 409,
    ErrorKind.THROTTLED: 429,
    ErrorKind.UNAVAILABLE: 503,
}


async def _taskledger_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskledgerError)
    status = HTTP_STATUS[exc.kind]
    headers: dict[str, str] = {}
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, ValidationFailed):
        detail: Any = exc.error_items()
    elif exc.kind is ErrorKind.INVALID:  # the one shape of every 422
        detail = [{"loc": ["body"], "msg": str(exc.detail), "type": "value_error"}]
    else:
        detail = exc.detail
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _error_item(error: Any) -> dict[str, Any]:
    msg = str(error.get("msg", ""))
    context = error.get("ctx") or {}
    if isinstance(context.get("error"), str) and context["error"] not in msg:
        msg = f"{msg}: {context['error']}"  # e.g. where a JSON body stops parsing
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": str(error.get("type", ""))}


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_error_item(e) for e in exc.errors()]}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        index: MethodIndex = request.app.state.method_index
        headers["Allow"] = ", ".join(index.allowed(request.url.path))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


#: SQLSTATEs of PostgreSQL's lock waits given up, deadlocks and serialisation failures.
_PG_BUSY = frozenset({"55P03", "40P01", "40001"})


def database_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says another transaction held a lock too long, rather than that the
    database is down: SQLite's "database is locked" once the busy timeout ran out, or one of
    PostgreSQL's lock errors."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _PG_BUSY:
        return True
    message = str(orig if orig is not None else exc).lower()
    return "database is locked" in message or "database table is locked" in message


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if database_busy(exc):
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
        detail = (
            "The database is busy: another transaction held its lock for longer than this "
            "request could wait. Nothing was written; try again."
        )
    else:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        detail = "The database is unavailable; try again."
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # The services check uniqueness first; this catches the race between two writers.
    log.info("integrity error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "This conflicts with an existing record."}, status_code=409)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # Values the schemas let through but the database cannot hold (a safety net, not the plan).
    log.info("data error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "A value cannot be stored by the database."}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


#: Turns an error response into what a web page shows; set on ``app.state`` by the web UI. It
#: gets every error response and returns it unchanged unless the request was for a page.
PageErrors = Callable[[Request, Response], Response]


def _also_for_pages(
    handler: Callable[[Request, Exception], Awaitable[Response]],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """``handler``, its response handed to the web UI's renderer: one mapping from errors to
    statuses for the API and the pages, each rendering it its own way."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        page_errors: PageErrors | None = getattr(request.app.state, "page_errors", None)
        return page_errors(request, response) if page_errors is not None else response

    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    handlers: list[tuple[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]] = [
        (TaskledgerError, _taskledger_error),
        (RequestValidationError, _request_validation),
        (HTTPException, _http_error),
        (IntegrityError, _integrity_error),
        (DataError, _data_error),
        (OperationalError, _database_unavailable),
        (Exception, _unexpected),
    ]
    for exc_type, handler in handlers:
        app.add_exception_handler(exc_type, _also_for_pages(handler))
