"""taskledger's Python client: record agent work from Python, sync or async.

``Ledger`` and ``AsyncLedger`` speak the HTTP API (docs/client.md) with httpx, taking and
returning the models of :mod:`taskledger.schemas`; they import nothing else of the server, so
the client works wherever the package is installed, without a database.

    from taskledger.client import Ledger

    with Ledger() as ledger:                      # TASKLEDGER_URL, TASKLEDGER_API_KEY
        with ledger.run("summarise", inputs={"doc": 42}) as run:
            run.log("read 3 pages")
"""

from __future__ import annotations

from taskledger.client._calls import RunQuery
from taskledger.client.aledger import AsyncLedger
from taskledger.client.buffer import BufferStats
from taskledger.client.errors import (
    APIStatusError,
    BadRequest,
    Conflict,
    Forbidden,
    LedgerConnectionError,
    LedgerError,
    NotFound,
    RateLimited,
    ServerError,
    SpoolFull,
    Unauthorized,
    ValidationError,
)
from taskledger.client.heartbeat import AsyncHeartbeat, Heartbeat
from taskledger.client.ledger import Ledger
from taskledger.client.run import Run, RunContext, Tracker

__all__ = [
    "APIStatusError",
    "AsyncHeartbeat",
    "AsyncLedger",
    "BadRequest",
    "BufferStats",
    "Conflict",
    "Forbidden",
    "Heartbeat",
    "Ledger",
    "LedgerConnectionError",
    "LedgerError",
    "NotFound",
    "RateLimited",
    "Run",
    "RunContext",
    "RunQuery",
    "ServerError",
    "SpoolFull",
    "Tracker",
    "Unauthorized",
    "ValidationError",
]
