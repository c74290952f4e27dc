"""Archive lines rendered by the database say exactly what the Python encoding says."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from taskledger.retention.archive.format import encode_row
from taskledger.retention.archive.reader import ArchiveReader
from taskledger.retention.archive.sql_lines import line_expression, part_line
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.policy.tables import RECORD_TABLES
from taskledger.retention.restore.restore import restore
from taskledger.store.models import Agent, Base, Run
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import data_tables, table_hashes

AWKWARD_TEXT = 'é ☃ \U0001f600 "quoted" back\\slash\nnew\ttab\x01\x1f\x7f </script>'


def _edge_rows(engine: Engine, project_id: uuid.UUID) -> None:
    """Values each rendering must get right: text needing escapes, characters beyond ASCII,
    nested JSON in no particular key order, a timestamp on a whole second, false and NULL."""
    whole_second = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                Run(
                    project_id=project_id,
                    task=AWKWARD_TEXT[:64],
                    run_id="edge-1",
                    status="completed",
                    started_at=whole_second,
                    finished_at=datetime(2026, 3, 1, 12, 0, 0, 120000, tzinfo=UTC),
                    duration_ms=2**40,
                    inputs={"z": 1, "a": {"y": [1, "é", None, 2.5, True], "b": None}, "m": "x"},
                    log_excerpt=AWKWARD_TEXT,
                    created_at=whole_second,
                    updated_at=whole_second,
                ),
                Run(
                    project_id=project_id,
                    task="plain",
                    run_id="edge-2",
                    status="running",
                    started_at=whole_second,
                    log_excerpt=AWKWARD_TEXT.replace("\x7f", ""),
                ),
                Run(project_id=project_id, task="", run_id="edge-3", status="queued", inputs=[]),
                Agent(
                    project_id=project_id,
                    name="edge-agent",
                    is_active=False,
                    capabilities=["a", {"k": "é"}],
                    config={"nested": {"deep": [{"x": 1}]}},
                ),
            ]
        )


def _lines(engine: Engine, table: Table) -> tuple[list[bytes], list[bytes]]:
    """Every row of ``table`` as the database renders it and as Python encodes it."""
    with engine.connect() as conn:
        expression = line_expression(table, conn.dialect)
        assert expression is not None
        key = table.primary_key.columns.values()[0]
        rendered = [
            row[0] for row in conn.execute(select(expression).select_from(table).order_by(key))
        ]
        python = [encode_row(row) for row in conn.execute(select(table).order_by(key)).mappings()]
    return [part_line(line) for line in rendered], python


def _ordered(value: Any) -> Any:
    """``value`` with every object as its list of (key, value) pairs: equal only in one order."""
    if isinstance(value, dict):
        return [(key, _ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def test_every_table_renders_as_python_encodes(engine: Engine) -> None:
    project_id = populated(engine, runs=300, days=60)
    _edge_rows(engine, project_id)
    checked = 0
    for name in data_tables():
        table = Base.metadata.tables[name]
        rendered, python = _lines(engine, table)
        assert len(rendered) == len(python)
        for ours, theirs in zip(rendered, python, strict=True):
            assert ours.isascii() and ours.endswith(b"\n") and ours.count(b"\n") == 1
            # Equal JSON values; top-level keys in the same (sorted) order, and the keys of
            # JSON values in the same order too (as the database gave them).
            assert json.loads(ours) == json.loads(theirs), name
            assert list(json.loads(ours)) == sorted(json.loads(theirs)), name
            assert _ordered(json.loads(ours)) == _ordered(json.loads(theirs)), name
            checked += 1
    assert checked > 300


def test_lines_without_json_values_are_byte_identical(engine: Engine) -> None:
    """Only a JSON column's value may be spelled differently (jsonb's spacing)."""
    project_id = populated(engine, runs=50, days=60)
    _edge_rows(engine, project_id)
    runs: Table = Run.__table__
    rendered, python = _lines(engine, runs)
    plain = [
        (ours, theirs)
        for ours, theirs in zip(rendered, python, strict=True)
        if json.loads(theirs)["inputs"] is None
    ]
    # DEL is ASCII: Python escapes it, the databases leave it as it is (the same JSON string).
    assert plain and all(ours == theirs for ours, theirs in plain)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=str)
def test_every_record_table_has_a_rendering(dialect: object) -> None:
    """No table falls back to Python encoding unnoticed."""
    for retained in RECORD_TABLES.values():
        assert line_expression(retained.model.__table__, dialect) is not None, retained.name  # type: ignore[arg-type]


def test_a_row_sqlite_cannot_render_is_encoded_in_python(engine: Engine, tmp_path: Path) -> None:
    """JSON written with NaN (Python's json accepts it) is refused by SQLite's json(): that row
    is archived through Python, the rest as rendered, and restore gives all of it back."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's jsonb cannot hold NaN")
    populated(engine, runs=40, days=400)
    with engine.begin() as conn:
        first = conn.scalar(select(func.min(Run.id)))
        conn.execute(text("UPDATE runs SET inputs = '{\"x\": NaN}' WHERE id = :id"), {"id": first})
    before = table_hashes(engine)
    policy = parse_policy(
        '[[rule]]\nname = "r"\ntable = "runs"\nolder_than = "1h"\naction = "delete"\n',
        default_name="x",
    )
    _, report = run_policy(engine, policy, tmp_path / "archives")
    assert report.outcome == "ok" and report.archive_uri
    with ArchiveReader(report.archive_uri) as reader:
        rows = [row for part in reader.manifest.files for row in reader.iter_rows(part)]
    assert len(rows) == 40 and math.isnan(rows[0]["inputs"]["x"])
    restore(engine, report.archive_uri, actor="test", trigger="cli")
    assert table_hashes(engine) == before
