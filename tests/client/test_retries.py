"""Retries against a server that has acted on a request but whose answer was lost (replaced by
a 503, or the connection closed): the client tries again with the same idempotency key and the
run is recorded once. A 4xx other than 429 is never retried."""

from __future__ import annotations

import asyncio

import pytest

from taskledger.client import AsyncLedger, Ledger, LedgerConnectionError, NotFound, ServerError
from tests.client.conftest import Live
from tests.client.proxy import Faults, proxy


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_lost_answers_are_retried_without_duplicates(live: Live, mode: str) -> None:
    faults = Faults(mode=mode, remaining=2)
    with proxy(live.url, faults) as url, Ledger(url, live.key, backoff=0.01) as ledger:
        run = ledger.runs.create(task=f"retried-{mode}")
        assert len([s for s in faults.seen if s.startswith("POST /api/v1/runs")]) == 3
        faults.remaining = 2
        result = ledger.runs.batch([{"task": f"batch-{mode}"} for _ in range(5)])
        assert result.created + result.existing == 5
        faults.remaining = 1
        with ledger.run(f"context-{mode}"):
            pass
    assert [r.id for r in live.runs_in_db(task=f"retried-{mode}")] == [run.id]
    assert len(live.runs_in_db(task=f"batch-{mode}")) == 5
    [context] = live.runs_in_db(task=f"context-{mode}")
    assert context.status == "completed"


def test_async_client_retries_too(live: Live) -> None:
    faults = Faults(mode="503", remaining=2)

    async def main() -> None:
        async with AsyncLedger(url, live.key, backoff=0.01) as ledger:
            await ledger.runs.create(task="async-retried")

    with proxy(live.url, faults) as url:
        asyncio.run(main())
    assert len(live.runs_in_db(task="async-retried")) == 1


def test_what_is_not_retried(live: Live) -> None:
    faults = Faults(mode="503", prefix="/api/v1/agents", remaining=10)
    with proxy(live.url, faults) as url:
        with Ledger(url, live.key, backoff=0.01, retries=2) as ledger:
            with pytest.raises(NotFound):
                ledger.runs.get(10**12)
            assert faults.seen.count("GET /api/v1/runs/1000000000000") == 1
            # 503 says nothing was done: even a create without a key is retried, up to the limit
            with pytest.raises(ServerError) as unavailable:
                ledger.agents.create(name="never")
            assert unavailable.value.retry_after == 0
            assert faults.seen.count("POST /api/v1/agents") == 3
        faults.mode, faults.remaining = "drop", 1
        with Ledger(url, live.key, backoff=0.01) as ledger:
            # a broken-off create of an agent may have happened: not repeated
            with pytest.raises(LedgerConnectionError):
                ledger.agents.create(name="maybe")
            assert faults.seen.count("POST /api/v1/agents") == 4
