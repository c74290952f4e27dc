"""Streaming exports: CSV that parses and equals the list API, formula guard, NDJSON, limits."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from taskledger.services.generate import generate
from taskledger.services.run_export import EXPORT_BATCH
from taskledger.store.engine import for_writing
from tests.helpers import key_headers, project_with_key, state_of
from tests.serving import server_env, serving, wait_until


def _all_items(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:  # type: ignore[type-arg]
    items: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/runs", params=query, headers=headers).json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return items


def _same_instant(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def test_csv_of_100k_runs_equals_the_list(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app, "read")
    generate(state_of(app).engine, project.id, runs=100_000, days=60, agents=4, seed=11)
    response = client.get("/api/v1/runs.csv", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="runs-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    items = _all_items(client, headers)
    assert len(rows) == len(items) == 100_000
    for row, item in zip(rows, items, strict=True):
        assert int(row["id"]) == item["id"]
        assert row["task"] == item["task"] and row["status"] == item["status"]
        assert row["run_id"] == item["run_id"]
        for name in ("started_at", "finished_at", "created_at", "updated_at"):
            assert _same_instant(row[name] or None, item[name]), name
        assert (int(row["duration_ms"]) if row["duration_ms"] else None) == item["duration_ms"]
        assert (json.loads(row["inputs"]) if row["inputs"] else None) == item["inputs"]
        assert (row["agent_id"] or None) == item["agent_id"]
        assert (row["log_excerpt"] or None) == item["log_excerpt"]
        assert (row["outputs_uri"] or None) == item["outputs_uri"]


def test_csv_guards_formulas_and_quotes(app: FastAPI, client: TestClient) -> None:
    _, headers = key_headers(app)
    tricky = {
        '=HYPERLINK("http://x")': '\'=HYPERLINK("http://x")',
        "+1+1": "'+1+1",
        "-2": "'-2",
        "@SUM(A1)": "'@SUM(A1)",
        "plain, with comma": "plain, with comma",
        'say "hi"\nnext line': 'say "hi"\nnext line',
    }
    for task_log in tricky:
        client.post(
            "/api/v1/runs",
            json={"task": "t", "log_excerpt": task_log, "approver": task_log[:100]},
            headers=headers,
        )
    client.post("/api/v1/runs", json={"task": "=cmd|' /C calc'!A0"}, headers=headers)
    response = client.get("/api/v1/runs.csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    logs = {row["log_excerpt"] for row in rows if row["log_excerpt"]}
    assert logs == set(tricky.values())
    tasks = {row["task"] for row in rows}
    assert "'=cmd|' /C calc'!A0" in tasks
    # The JSON export is not a spreadsheet format: values stay exactly as recorded.
    lines = client.get("/api/v1/runs.ndjson", headers=headers).text.splitlines()
    assert {json.loads(line)["log_excerpt"] for line in lines} >= set(tricky)


def test_exports_take_filters_and_limit(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app, "read")
    generate(state_of(app).engine, project.id, runs=3000, days=10, agents=2, seed=5)
    params = {"status": ["failed"], "task": ["embed", "plan"]}
    items = _all_items(client, headers, **params)
    ndjson = client.get("/api/v1/runs.ndjson", params=params, headers=headers)
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    decoded = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [d["id"] for d in decoded] == [i["id"] for i in items]
    assert decoded[0]["inputs"] == items[0]["inputs"]  # nested JSON, not a string
    limited = client.get("/api/v1/runs.csv", params={"limit": 7}, headers=headers)
    assert len(list(csv.DictReader(io.StringIO(limited.text)))) == 7
    empty = client.get("/api/v1/runs.csv", params={"task": "nothing"}, headers=headers)
    assert empty.text.strip() == ",".join(next(csv.reader(io.StringIO(limited.text))))


def test_csv_bytes_are_the_same_on_every_backend(app: FastAPI, client: TestClient) -> None:
    """The exact record: quoting, the formula guard, NULLs, timestamps and an embedded newline
    (each backend has its own CSV writer; both must write these bytes)."""
    _, headers = key_headers(app)
    run = client.post(
        "/api/v1/runs",
        json={
            "task": "=t",
            "run_id": "r1",
            "status": "completed",
            "started_at": "2025-01-02T03:04:05.000006Z",
            "finished_at": "2025-01-02T03:04:06Z",
            "inputs": {"a": 1},
            "log_excerpt": 'say "hi"\nnext',
        },
        headers=headers,
    ).json()
    text = client.get("/api/v1/runs.csv", headers=headers).text
    header, record = text.split("\r\n", 1)
    assert header.startswith("id,task,run_id,status,started_at,")
    expected = (
        f'{run["id"]},"\'=t","r1",completed,2025-01-02T03:04:05.000006+00:00,'
        '2025-01-02T03:04:06.000000+00:00,999,"{""a"": 1}",,"say ""hi""\nnext",,,,,,,'
    )
    assert record.startswith(expected)
    assert record.endswith("+00:00\r\n") and record.count("\r\n") == 1


def _end_the_copy(engine: Engine) -> None:
    """Terminate the PostgreSQL process running the export's COPY, once it is running."""
    copying = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND query LIKE 'COPY %%'"
    )

    def terminated() -> bool:
        with engine.connect() as conn:
            return any(conn.exec_driver_sql(copying).scalars())

    wait_until(terminated, "the export's COPY running")


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_an_export_that_fails_midway_never_looks_complete(
    engine: Engine, database_url: str, tmp_path: Path, kind: str
) -> None:
    """A client must be able to tell a cut-short export from a whole one: the server breaks off
    the response (no final chunk) and an NDJSON export says so in a last line."""
    project_id, key = project_with_key(engine)
    generate(engine, project_id, runs=6 * EXPORT_BATCH, days=30, agents=1, seed=3)
    received: list[str] = []
    renamed = False
    with serving(server_env(database_url, tmp_path)) as server:
        try:
            with httpx.stream(
                "GET", f"{server.url}/api/v1/runs.{kind}", headers={"X-API-Key": key}, timeout=60
            ) as response:
                assert response.status_code == 200
                chunks = response.iter_text()
                received.append(next(chunks))
                if engine.dialect.name == "postgresql" and kind == "csv":
                    # One COPY in one transaction: its lock keeps the table from being renamed
                    # until it ends, so the database process serving it goes away instead.
                    _end_the_copy(engine)
                else:
                    # The table goes away under the export, as a failing database would.
                    with for_writing(engine).begin() as conn:
                        conn.exec_driver_sql("ALTER TABLE runs RENAME TO runs_gone")
                    renamed = True
                with pytest.raises(httpx.RemoteProtocolError):
                    received.extend(chunks)
        finally:
            if renamed:
                with for_writing(engine).begin() as conn:
                    conn.exec_driver_sql("ALTER TABLE runs_gone RENAME TO runs")
        assert "export failed" in server.output()
    text = "".join(received)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) < 6 * EXPORT_BATCH
    if kind == "ndjson":
        assert "export failed" in json.loads(lines[-1])["error"]
