"""Streaming run exports (CSV and NDJSON) in constant memory, with no row cap.

Rows are read in keyset batches, each in its own short read transaction, so an export of any
size neither holds memory nor pins an old snapshot. Timestamps, ids and the spreadsheet
formula guard are computed in SQL: the database formats each cell in C, and Python only joins
them, which is what makes a CSV of a million rows fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.sql.elements import KeyedColumnElement

from taskledger.schemas.runs import RunFilters
from taskledger.services.runs import filter_conditions
from taskledger.store.models import Run

EXPORT_BATCH = 5000
#: Cells starting with these are read as formulas by spreadsheets; they get a leading quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# (name, column, kind): kind decides how the column is rendered. "enum" values come from a
# closed vocabulary (a CHECK constraint), so they never need quoting or the formula guard.
COLUMNS: tuple[tuple[str, KeyedColumnElement[Any], str], ...] = (
    ("id", Run.__table__.c.id, "int"),
    ("task", Run.__table__.c.task, "text"),
    ("run_id", Run.__table__.c.run_id, "text"),
    ("status", Run.__table__.c.status, "enum"),
    ("started_at", Run.__table__.c.started_at, "time"),
    ("finished_at", Run.__table__.c.finished_at, "time"),
    ("duration_ms", Run.__table__.c.duration_ms, "int"),
    ("inputs", Run.__table__.c.inputs, "json"),
    ("outputs_uri", Run.__table__.c.outputs_uri, "text"),
    ("log_excerpt", Run.__table__.c.log_excerpt, "text"),
    ("approval_state", Run.__table__.c.approval_state, "text"),
    ("approver", Run.__table__.c.approver, "text"),
    ("webhook_notified_at", Run.__table__.c.webhook_notified_at, "time"),
    ("agent_id", Run.__table__.c.agent_id, "uuid"),
    ("task_id", Run.__table__.c.task_id, "uuid"),
    ("idempotency_key", Run.__table__.c.idempotency_key, "text"),
    ("created_at", Run.__table__.c.created_at, "time"),
    ("updated_at", Run.__table__.c.updated_at, "time"),
)
HEADER = [name for name, _, _ in COLUMNS]


def _iso(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """ISO 8601 text with offset, or NULL."""
    if dialect == "sqlite":
        # Stored as naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'; NULL stays NULL.
        return func.replace(type_coerce(column, String), " ", "T").concat("+00:00")
    return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')


def _uuid_text(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The dashed form of a UUID, or NULL."""
    if dialect != "sqlite":
        return cast(column, Text)
    raw = type_coerce(column, String)  # stored as 32 hex digits
    text: ColumnElement[Any] = func.substr(raw, 1, 8)
    for start, length in ((9, 4), (13, 4), (17, 4), (21, 12)):
        text = text.concat("-").concat(func.substr(raw, start, length))
    return text


def _text(column: ColumnElement[Any], kind: str, dialect: str) -> ColumnElement[Any]:
    """Any column as text (NULL stays NULL)."""
    if kind == "time":
        return _iso(column, dialect)
    if kind == "uuid":
        return _uuid_text(column, dialect)
    if kind == "int":
        return cast(column, Text)
    if kind == "json" and dialect != "sqlite":
        return cast(column, Text)
    return type_coerce(column, String)


def _guard(text: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """Prefix a quote to cells a spreadsheet would run as a formula."""
    # The first character's code point: cheaper for the database than a substring.
    first = func.unicode(text) if dialect == "sqlite" else func.ascii(text)
    codes = [ord(c) for c in FORMULA_PREFIXES]
    return case((first.in_(codes), literal("'").concat(text)), else_=text)


def csv_line(dialect: str) -> ColumnElement[Any]:
    """One RFC 4180 record per row, rendered by the database.

    Text cells are always quoted (RFC 4180 allows it) with inner quotes doubled; numbers and
    timestamps are bare; NULL is an empty field.
    """
    cells: list[ColumnElement[Any]] = []
    for _, column, kind in COLUMNS:
        text = _text(column, kind, dialect)
        if kind in ("text", "json"):
            quoted = literal('"').concat(func.replace(_guard(text, dialect), '"', '""'))
            quoted = quoted.concat('"')
            cells.append(case((column.is_(None), literal("")), else_=quoted))
        else:
            cells.append(func.coalesce(text, literal("")))
    line = cells[0]
    for cell in cells[1:]:
        line = line.concat(",").concat(cell)
    return line


def json_line(dialect: str) -> ColumnElement[Any]:
    """One JSON object per row (the run list's fields, in order), rendered by the database."""
    args: list[Any] = []
    for name, column, kind in COLUMNS:
        if kind == "int":
            value: Any = column
        elif kind == "json":
            value = func.json(type_coerce(column, String)) if dialect == "sqlite" else column
        else:
            value = _text(column, kind, dialect)
        args.extend((literal(name), value))
    if dialect == "sqlite":
        return func.json_object(*args)
    return cast(func.json_build_object(*args), Text)


def iter_batches(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    line: ColumnElement[Any],
    *,
    limit: int | None = None,
    batch_size: int = EXPORT_BATCH,
) -> Iterator[list[str]]:
    """Yield lists of rendered lines, newest run first, one list per keyset batch."""
    table = Run.__table__
    # On SQLite the key is compared as the stored text: no conversion on either side.
    started = (
        type_coerce(table.c.started_at, String)
        if engine.dialect.name == "sqlite"
        else table.c.started_at
    )
    key_id = table.c.id
    base = select(line, started, key_id).where(and_(*filter_conditions(project_id, filters)))
    last: tuple[Any, int] | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        stmt = base
        if last is not None:
            bound = tuple_(literal(last[0], started.type), literal(last[1], key_id.type))
            stmt = stmt.where(tuple_(started, key_id) < bound)
        stmt = stmt.order_by(table.c.started_at.desc(), key_id.desc()).limit(size)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        last = (rows[-1][1], rows[-1][2])
        yield [row[0] for row in rows]
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def export_chunks(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    fmt: str,
    *,
    limit: int | None = None,
) -> Iterator[tuple[str, int]]:
    """``(text, rows in it)`` per batch: RFC 4180 CSV with a header row (``fmt="csv"``), or one
    JSON object per line with the run list's fields (``fmt="ndjson"``)."""
    dialect = engine.dialect.name
    if fmt == "csv":
        yield ",".join(HEADER) + "\r\n", 0
        for lines in iter_batches(engine, project_id, filters, csv_line(dialect), limit=limit):
            yield "\r\n".join(lines) + "\r\n", len(lines)
        return
    if fmt != "ndjson":
        raise ValueError(f"unknown export format {fmt!r}")
    for lines in iter_batches(engine, project_id, filters, json_line(dialect), limit=limit):
        yield "\n".join(lines) + "\n", len(lines)


def iter_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[str]:
    """The CSV export as chunks of text."""
    return (text for text, _ in export_chunks(engine, project_id, filters, "csv", limit=limit))


def iter_ndjson(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[str]:
    """The NDJSON export as chunks of text."""
    return (text for text, _ in export_chunks(engine, project_id, filters, "ndjson", limit=limit))
