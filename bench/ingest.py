"""Bulk ingest (SPEC section 10): ``POST /api/v1/runs:batch`` over HTTP at least 0.3x the rate of
raw SQLAlchemy Core ``executemany`` into the same database.

The server is a real ``taskledger serve`` (uvicorn) on 127.0.0.1 in its own process; one httpx
client posts batches of 1000 runs one after the other with a write key, the JSON bodies encoded
before the clock starts. The baseline inserts the same rows, as Python values, with
``connection.execute(insert(runs), rows)`` in batches of 1000, one transaction per batch like
the endpoint. Rounds alternate between the two and the best rate of each is kept.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, insert, select

from benchlib import (
    Target,
    arguments,
    backends,
    console,
    fresh_database,
    new_api_key,
    print_table,
    seed_runs,
    serve,
    times,
)
from taskledger.store.engine import for_writing
from taskledger.store.models import Agent, Run

TARGET = Target(0.3, at_most=False)
BATCH = 1000
ROUNDS = 3
STATUSES = ("completed", "completed", "completed", "failed", "running")


def make_items(count: int, agent_ids: list[uuid.UUID], tag: str) -> list[dict[str, Any]]:
    """``count`` runs as a client would send them (JSON-ready), with unique run ids."""
    rng = random.Random(tag)
    now = datetime.now(UTC)
    items = []
    for n in range(count):
        status = rng.choice(STATUSES)
        started = now - timedelta(seconds=rng.random() * 86_400)
        item: dict[str, Any] = {
            "task": rng.choice(("ingest", "embed", "review", "deploy")),
            "run_id": f"{tag}-{n:08d}",
            "status": status,
            "started_at": started.isoformat(),
            "inputs": {"items": rng.randint(1, 500), "source": f"batch-{rng.randint(1, 50)}"},
            "log_excerpt": f"processed {rng.randint(1, 500)} items",
            "agent_id": str(rng.choice(agent_ids)),
        }
        if status != "running":
            duration = rng.randint(10, 600_000)
            item["finished_at"] = (started + timedelta(milliseconds=duration)).isoformat()
            item["duration_ms"] = duration
            item["outputs_uri"] = f"s3://outputs/{item['run_id']}.json"
        items.append(item)
    return items


def as_row(item: dict[str, Any], project_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The same run as the Python values of its columns, for the baseline."""
    finished = item.get("finished_at")
    return {
        "project_id": project_id,
        "agent_id": uuid.UUID(item["agent_id"]),
        "task_id": None,
        "task": item["task"],
        "run_id": item["run_id"],
        "status": item["status"],
        "started_at": datetime.fromisoformat(item["started_at"]),
        "finished_at": datetime.fromisoformat(finished) if finished else None,
        "duration_ms": item.get("duration_ms"),
        "inputs": item["inputs"],
        "outputs_uri": item.get("outputs_uri"),
        "log_excerpt": item["log_excerpt"],
        "approval_state": None,
        "approver": None,
        "webhook_notified_at": None,
        "idempotency_key": None,
        "created_at": now,
        "updated_at": now,
    }


def batches(items: list[Any]) -> list[list[Any]]:
    return [items[start : start + BATCH] for start in range(0, len(items), BATCH)]


def over_http(base_url: str, key: str, items: list[dict[str, Any]]) -> float:
    """Seconds to post ``items`` in batches; bodies are encoded before the clock starts."""
    bodies = [json.dumps({"runs": batch}).encode() for batch in batches(items)]
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        client.get("/healthz")  # connect before timing
        started = time.perf_counter()
        for body in bodies:
            response = client.post("/api/v1/runs:batch", content=body)
            if response.status_code != 201:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        return time.perf_counter() - started


def raw_core(engine: Engine, project_id: uuid.UUID, items: list[dict[str, Any]]) -> float:
    """Seconds to insert the same rows with Core ``executemany``, a transaction per batch."""
    now = datetime.now(UTC)
    rows = [as_row(item, project_id, now) for item in items]
    statement = insert(Run.__table__)
    # BEGIN IMMEDIATE on SQLite, as the server's writes: the same locking on both sides.
    with for_writing(engine).connect() as conn:
        started = time.perf_counter()
        for batch in batches(rows):
            with conn.begin():
                conn.execute(statement, batch)
        return time.perf_counter() - started


def measure(engine: Engine, rows: int) -> list[list[Any]]:
    project_id = seed_runs(engine, 0)
    with engine.connect() as conn:
        agent_ids = list(conn.scalars(select(Agent.id).where(Agent.project_id == project_id)))
    key = new_api_key(engine, project_id)
    http_rates, raw_rates = [], []
    with serve(engine) as base_url:
        for n in range(ROUNDS):
            http_items = make_items(rows, agent_ids, f"http{n}")
            raw_items = make_items(rows, agent_ids, f"raw{n}")
            # Alternate which goes first: the table grows as the rounds go.
            order = ("http", "raw") if n % 2 == 0 else ("raw", "http")
            for kind in order:
                if kind == "http":
                    http_rates.append(rows / over_http(base_url, key, http_items))
                else:
                    raw_rates.append(rows / raw_core(engine, project_id, raw_items))
            console.print(
                f"  round {n + 1}: HTTP {http_rates[-1]:,.0f} runs/s, "
                f"raw {raw_rates[-1]:,.0f} runs/s",
                style="dim",
            )
    raw, http = max(raw_rates), max(http_rates)
    return [
        ["raw Core executemany", f"{raw:,.0f}", times(1.0), ""],
        ["runs:batch over HTTP", f"{http:,.0f}", times(http / raw), TARGET.verdict(http / raw)],
    ]


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=100_000)
    for backend in backends(args.backend):
        console.print(f"[bold]{backend}[/]: {args.rows:,} runs per round, batches of {BATCH}")
        with fresh_database(backend) as engine:
            rows = measure(engine, args.rows)
        print_table(
            f"Ingest on {backend}, {args.rows:,} runs (best of {ROUNDS} rounds)",
            ["path", "runs/s", "÷ raw", "target"],
            rows,
        )


if __name__ == "__main__":
    main()
