"""The CSV export's bytes on each backend's own writer (PostgreSQL's COPY, SQLite's Python
formatter): the formula guard on every text column, quoting, NULLs, non-ASCII, records that span
chunks, an empty result and the filters."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.schemas.runs import RunFilters
from taskledger.services import run_export
from taskledger.services.generate import generate
from taskledger.services.run_export import FORMULA_PREFIXES, HEADER
from tests.helpers import key_headers, state_of

TEXT_COLUMNS = (
    "task",
    "run_id",
    "outputs_uri",
    "log_excerpt",
    "approval_state",
    "approver",
    "idempotency_key",
)


def _export(app: FastAPI, project_id: uuid.UUID, **filters: Any) -> bytes:
    limit = filters.pop("limit", None)
    chunks = run_export.iter_csv(
        state_of(app).engine, project_id, RunFilters(**filters), limit=limit
    )
    return b"".join(chunks)


def _quoted(value: str | None) -> str:
    if value is None:
        return ""
    if value[:1] in FORMULA_PREFIXES:
        value = "'" + value
    return '"' + value.replace('"', '""') + '"'


def _time(value: str | None) -> str:
    if value is None:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).isoformat(timespec="microseconds")


def _record(run: dict[str, Any], inputs_text: str | None) -> str:
    """The export's record of ``run`` (as the API reads it back), by the documented rules."""
    cells = []
    for name in HEADER:
        value = run[name]
        if name in TEXT_COLUMNS:
            cells.append(_quoted(value))
        elif name == "inputs":
            cells.append(_quoted(inputs_text))
        elif name.endswith("_at"):
            cells.append(_time(value))
        else:
            cells.append("" if value is None else str(value))
    return ",".join(cells) + "\r\n"


def _post(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/runs", json=fields, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_every_text_column_is_guarded(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app)
    for index, prefix in enumerate(FORMULA_PREFIXES):
        values = {name: f"{prefix}{name} {index}" for name in TEXT_COLUMNS}
        _post(
            client,
            headers,
            started_at=f"2025-01-02T03:04:0{index}Z",
            inputs=-(index + 1),
            **values,
        )
    _post(client, headers, task="ok", started_at="2025-01-01T00:00:00Z", inputs="=not a formula")
    rows = list(csv.DictReader(io.StringIO(_export(app, project.id).decode(), newline="")))
    assert len(rows) == len(FORMULA_PREFIXES) + 1
    plain = rows.pop()  # the oldest
    assert plain["task"] == "ok" and plain["inputs"] == '"=not a formula"'
    for row, index in zip(rows, reversed(range(len(FORMULA_PREFIXES))), strict=True):
        prefix = FORMULA_PREFIXES[index]
        for name in TEXT_COLUMNS:
            assert row[name] == f"'{prefix}{name} {index}", (name, prefix)
        assert row["inputs"] == f"'-{index + 1}"  # a negative number is a JSON text too


def test_quotes_newlines_non_ascii_and_nulls_are_exact(app: FastAPI, client: TestClient) -> None:
    """Every byte of records holding the cells CSV has to quote, on either backend's writer."""
    project, headers = key_headers(app)
    tricky = [
        "a, b",
        'say "hi"',
        "line one\nline two",
        "crlf\r\ninside",
        'ends with a quote"',
        "",
        "naïve café — 日本語 🚀",
        "\n",
    ]
    runs = []
    for index, value in enumerate(tricky):
        runs.append(
            _post(
                client,
                headers,
                task=f"t{index}",
                started_at=f"2025-03-04T05:06:{index:02d}.{index * 10:06d}Z",
                status="completed",
                finished_at="2025-03-04T06:00:00Z",
                inputs={"note": value},
                log_excerpt=value,
                approver=value or None,
                outputs_uri=f"s3://bucket/é/{index}",
            )
        )
    bare = _post(client, headers, task="bare", started_at="2024-12-31T23:59:59.999999+00:00")
    data = _export(app, project.id)
    # The JSON column's text is the database's: SQLite keeps json.dumps' ASCII escapes, while
    # PostgreSQL's jsonb writes UTF-8.
    ascii_json = state_of(app).engine.dialect.name == "sqlite"
    expected = ",".join(HEADER) + "\r\n"
    for run in [*reversed(runs)]:
        expected += _record(run, json.dumps(run["inputs"], ensure_ascii=ascii_json))
    expected += _record(bare, None)
    assert data.decode() == expected
    rows = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    assert [row["log_excerpt"] for row in rows[:-1]] == list(reversed(tricky))
    assert rows[-1]["finished_at"] == rows[-1]["inputs"] == rows[-1]["agent_id"] == ""


def test_records_spanning_chunks_keep_their_line_breaks(app: FastAPI, client: TestClient) -> None:
    """An export of several chunks, with line breaks inside cells, is the sum of its records."""
    project, headers = key_headers(app)
    excerpt = ("x" * 99 + "\n") * 2  # with two LFs of its own
    # More records than a SQLite batch holds, more bytes than two PostgreSQL chunks.
    count = run_export.EXPORT_BATCH + 10
    assert count > run_export.SQLITE_CSV_BATCH
    assert count * len(excerpt) > 2 * run_export.COPY_CHUNK
    for start in range(0, count, 500):
        batch = [
            {"task": "big", "log_excerpt": excerpt, "started_at": f"2025-05-01T00:00:00.{i:06d}Z"}
            for i in range(start, min(count, start + 500))
        ]
        response = client.post("/api/v1/runs:batch", json={"runs": batch}, headers=headers)
        assert response.status_code in (200, 201), response.text
    chunks = list(run_export.iter_csv(state_of(app).engine, project.id, RunFilters()))
    assert len(chunks) > 2
    text = b"".join(chunks).decode()
    assert text.count("\r\n") == count + 1  # a CRLF ends each record and nothing else
    assert text.count("\n") == count * 3 + 1
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == count and all(row["log_excerpt"] == excerpt for row in rows)


def test_an_empty_export_is_the_header(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app)
    assert _export(app, project.id) == (",".join(HEADER) + "\r\n").encode()
    _post(client, headers, task="one")
    assert _export(app, project.id, task=["other"]) == (",".join(HEADER) + "\r\n").encode()
    assert _export(app, project.id, limit=1).count(b"\r\n") == 2


def test_filters_select_what_the_list_selects(app: FastAPI, client: TestClient) -> None:
    project, headers = key_headers(app, "read", "write")
    generate(state_of(app).engine, project.id, runs=600, days=10, agents=2, seed=9)
    first = client.get("/api/v1/runs", params={"limit": 1}, headers=headers).json()["items"][0]
    client.patch(
        f"/api/v1/runs/{first['id']}", json={"approval_state": "approved"}, headers=headers
    )
    agents = client.get("/api/v1/agents", headers=headers).json()["items"]
    since = datetime.now(UTC).replace(microsecond=0).isoformat()
    cases: list[dict[str, Any]] = [
        {"status": ["failed", "completed"]},
        {"task": ["embed"]},
        {"since": "2000-01-01T00:00:00Z", "until": since},
        {"q": "timed out"},
        {"run_id": first["run_id"]},
        {"approval_state": "approved"},
        {"agent": agents[0]["name"]},
        {"agent": agents[1]["id"], "status": ["completed"]},
    ]
    for params in cases:
        listed = []
        cursor = None
        while True:
            query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/v1/runs", params=query, headers=headers).json()
            listed.extend(item["id"] for item in body["items"])
            if not (cursor := body["next_cursor"]):
                break
        data = _export(app, project.id, **params)
        exported = [int(row["id"]) for row in csv.DictReader(io.StringIO(data.decode()))]
        assert exported == listed, params
        assert listed, params  # each case selects something
    limited = _export(app, project.id, status=["completed"], limit=5)
    assert len(list(csv.DictReader(io.StringIO(limited.decode())))) == 5


def test_batches_and_memos_leave_the_bytes_unchanged(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's keyset batches (the key read from the record's own cells) and its memos of
    repeated cells, at their smallest: the bytes the documented rules give for the runs the
    list API returns, in its order, and no memo holding more than its bound and one batch."""
    if state_of(app).engine.dialect.name != "sqlite":
        pytest.skip("SQLite's batches and memos")
    project, headers = key_headers(app)
    runs = [
        # Ties on started_at across batch boundaries, names that repeat and names that do not.
        {"task": f"task {i % 3 if i % 2 else i}", "started_at": "2025-06-01T00:00:00Z"}
        for i in range(23)
    ] + [
        {"task": "=sum", "approver": f"approver {i}", "started_at": f"2025-06-02T00:00:0{i}Z"}
        for i in range(5)
    ]
    response = client.post("/api/v1/runs:batch", json={"runs": runs}, headers=headers)
    assert response.status_code in (200, 201), response.text
    listed = client.get("/api/v1/runs", params={"limit": 100}, headers=headers).json()["items"]
    assert len(listed) == len(runs)
    expected = (",".join(HEADER) + "\r\n" + "".join(_record(run, None) for run in listed)).encode()
    assert _export(app, project.id) == expected
    memos: list[Any] = []
    original = run_export._row_formatter

    def recording() -> Any:
        formatter, made = original()
        memos.extend(made)
        return formatter, made

    monkeypatch.setattr(run_export, "SQLITE_CSV_BATCH", 4)
    monkeypatch.setattr(run_export, "MEMO_VALUES", 2)
    monkeypatch.setattr(run_export, "_row_formatter", recording)
    assert _export(app, project.id) == expected
    rows = list(csv.DictReader(io.StringIO(expected.decode(), newline="")))
    assert sum(row["task"] == "'=sum" for row in rows) == 5
    assert memos and max(len(memo) for memo in memos) <= 2 + 4


_TO_CHAR = """to_char({}, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def test_postgresql_timestamps_are_to_char_exactly(app: FastAPI, client: TestClient) -> None:
    """PostgreSQL sends its own timestamp text, which the export rewrites: every shape of that
    text (no fraction, one to six digits, a five-digit year, BC, infinity) comes out as
    ``to_char`` writes it, whatever DateStyle and time zone the database defaults to."""
    engine = state_of(app).engine
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's COPY path")
    project, headers = key_headers(app)
    values = [
        "2025-01-02 03:04:05+00",
        "2025-01-02 03:04:05.1+00",
        "2025-01-02 03:04:05.12+00",
        "2025-01-02 03:04:05.123+00",
        "2025-01-02 03:04:05.1234+00",
        "2025-01-02 03:04:05.12345+00",
        "2025-01-02 03:04:05.123456+00",
        "2025-01-02 03:04:05.000001+00",
        "2025-01-02 03:04:05.100000-07:30",
        "12025-01-02 03:04:05.12345+00",
        "0044-03-15 12:00:00.5+00 BC",
        "infinity",
        "-infinity",
    ]
    runs = [
        {"task": f"t{i}", "started_at": f"2025-06-01T00:00:{i:02d}Z", "log_excerpt": 'a,"=b'}
        for i in range(len(values))
    ]
    response = client.post("/api/v1/runs:batch", json={"runs": runs}, headers=headers)
    assert response.status_code in (200, 201), response.text
    times = ("finished_at", "webhook_notified_at", "created_at", "updated_at")
    with engine.begin() as conn:
        for index, value in enumerate(values):
            conn.exec_driver_sql(
                f"UPDATE runs SET {', '.join(f'{name} = %(v)s' for name in times)}"
                " WHERE project_id = %(p)s AND task = %(t)s",
                {"v": value, "p": project.id, "t": f"t{index}"},
            )
        database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET DateStyle = 'SQL, DMY'")
        conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET TimeZone = 'Asia/Kolkata'")
    engine.dispose()  # new connections take the database's new defaults
    try:
        rows = list(csv.DictReader(io.StringIO(_export(app, project.id).decode(), newline="")))
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET DateStyle')
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET TimeZone')
        engine.dispose()
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TimeZone = 'UTC'")
        expected = {
            row[0]: row[1:]
            for row in conn.exec_driver_sql(
                f"SELECT task, {', '.join(_TO_CHAR.format(name) for name in times)}, "
                f"{_TO_CHAR.format('started_at')} FROM runs WHERE project_id = %(p)s",
                {"p": project.id},
            )
        }
    assert len(rows) == len(values)
    for row in rows:
        wanted = [cell or "" for cell in expected[row["task"]]]
        assert [row[name] for name in (*times, "started_at")] == wanted, row["task"]
        assert row["log_excerpt"] == 'a,"=b'
    by_task = {row["task"]: row for row in rows}
    assert by_task["t1"]["finished_at"] == "2025-01-02T03:04:05.100000+00:00"
    assert by_task["t8"]["finished_at"] == "2025-01-02T10:34:05.100000+00:00"
    assert by_task["t11"]["finished_at"] == ""
