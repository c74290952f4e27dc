"""Streaming run exports (CSV and NDJSON) in constant memory, with no row cap.

Rows are read in keyset batches, each in its own short read transaction, so an export of any
size neither holds memory nor pins an old snapshot. The CSV is written by the fastest writer at
hand on each backend, with the same bytes on both: on PostgreSQL the server's own CSV writer
(``COPY ... TO STDOUT``) quotes the cells that SQL has formatted (timestamps, ids, the
spreadsheet formula guard); on SQLite, whose SQL functions cost more per cell than Python,
Python formats the stored values column by column. NDJSON objects are rendered in SQL.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
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

from taskledger.enums import ExportFormat
from taskledger.schemas.runs import RunFilters
from taskledger.services.runs import filter_conditions
from taskledger.store.engine import is_sqlite
from taskledger.store.models import Run

log = logging.getLogger(__name__)

EXPORT_BATCH = 5000
#: Cells starting with these are read as formulas by spreadsheets; they get a leading quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_STARTS = frozenset(FORMULA_PREFIXES)

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


def _keyset_batches(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    selected: Sequence[ColumnElement[Any]],
    *,
    limit: int | None,
    batch_size: int,
) -> Iterator[Sequence[Sequence[Any]]]:
    """Yield the rows of ``selected`` (newest run first), one list per keyset batch."""
    table = Run.__table__
    # On SQLite the key is compared as the stored text: no conversion on either side.
    started = type_coerce(table.c.started_at, String) if is_sqlite(engine) else table.c.started_at
    key_id = table.c.id
    width = len(selected)
    base = select(*selected, started, key_id).where(and_(*filter_conditions(project_id, filters)))
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
            rows = list(conn.execute(stmt).all())
        if not rows:
            return
        last = (rows[-1][width], rows[-1][width + 1])
        yield rows
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def iter_batches(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    line: ColumnElement[Any],
    *,
    limit: int | None = None,
    batch_size: int = EXPORT_BATCH,
) -> Iterator[list[str]]:
    """Yield lists of lines rendered by the database, newest run first, one list per batch."""
    for rows in _keyset_batches(
        engine, project_id, filters, [line], limit=limit, batch_size=batch_size
    ):
        yield [row[0] for row in rows]


# --- CSV on SQLite: stored values, formatted in Python a column at a time ---------------------


def _quoted(values: Iterable[str | None]) -> list[str]:
    """Text cells: always quoted, inner quotes doubled, formulas guarded; NULL is empty."""
    out = []
    for value in values:
        if value is None:
            out.append("")
            continue
        if value and value[0] in _FORMULA_STARTS:
            value = "'" + value
        out.append('"' + value.replace('"', '""') + '"')
    return out


def _sqlite_times(values: Iterable[str | None]) -> list[str]:
    # Stored as naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return ["" if v is None else v.replace(" ", "T", 1) + "+00:00" for v in values]


def _sqlite_uuids(values: Iterable[str | None]) -> list[str]:
    # Stored as 32 hex digits.
    return [
        "" if v is None else f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}" for v in values
    ]


def _numbers(values: Iterable[int | None]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def _as_is(values: Iterable[str]) -> Iterable[str]:
    return values


_SQLITE_CELLS: dict[str, Callable[[Iterable[Any]], Iterable[str]]] = {
    "int": _numbers,
    "text": _quoted,
    "json": _quoted,
    "enum": _as_is,
    "time": _sqlite_times,
    "uuid": _sqlite_uuids,
}


def _sqlite_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None
) -> Iterator[tuple[str, int]]:
    # Read the stored values untouched (no type processing), as SQLite's own CLI would.
    selected = [
        column if kind == "int" else type_coerce(column, String) for _, column, kind in COLUMNS
    ]
    formats = [_SQLITE_CELLS[kind] for _, _, kind in COLUMNS]
    for rows in _keyset_batches(
        engine, project_id, filters, selected, limit=limit, batch_size=EXPORT_BATCH
    ):
        # zip(*rows) also holds the two key columns at the end, which are not written.
        stored = zip(*rows, strict=True)
        columns = [fmt(values) for fmt, values in zip(formats, stored, strict=False)]
        yield "\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n", len(rows)


# --- CSV on PostgreSQL: COPY ... TO STDOUT (FORMAT csv) of cells formatted in SQL -------------


def _copy_cell(column: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
    if kind in ("text", "json"):
        return _guard(_text(column, kind, "postgresql"), "postgresql")
    if kind in ("int", "enum"):
        return column
    return _text(column, kind, "postgresql")


def _crlf(text: str, rows: int) -> str:
    """COPY ends records with LF; the export ends them with CRLF. A quoted cell may hold LFs
    of its own: then a record ends only where its quotes are balanced."""
    if text.count("\n") == rows:
        return text.replace("\n", "\r\n")
    records: list[str] = []
    pending: str | None = None
    for piece in text.split("\n")[:-1]:
        pending = piece if pending is None else pending + "\n" + piece
        if pending.count('"') % 2 == 0:
            records.append(pending)
            pending = None
    return "\r\n".join(records) + "\r\n"


def _postgresql_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None
) -> Iterator[tuple[str, int]]:
    table = Run.__table__
    key = tuple_(table.c.started_at, table.c.id)
    order = (table.c.started_at.desc(), table.c.id.desc())
    conditions = filter_conditions(project_id, filters)
    # Labelled with the export's names, which FORCE_QUOTE refers to.
    cells = select(*(_copy_cell(column, kind).label(name) for name, column, kind in COLUMNS))
    quoted = ", ".join(name for name, _, kind in COLUMNS if kind in ("text", "json"))
    after: tuple[Any, int] | None = None  # the key of the last row exported
    remaining = limit
    while remaining is None or remaining > 0:
        size = EXPORT_BATCH if remaining is None else min(EXPORT_BATCH, remaining)
        window = list(conditions)
        if after is not None:
            window.append(key < tuple_(literal(after[0], table.c.started_at.type), after[1]))
        # The batch's last key and its rows are read in one snapshot, so the COPY returns
        # exactly the rows up to that key.
        snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with snapshot as conn, conn.begin():
            boundary = conn.execute(
                select(table.c.started_at, table.c.id)
                .where(*window)
                .order_by(*order)
                .offset(size - 1)
                .limit(1)
            ).first()
            stmt = cells.where(*window)
            if boundary is not None:
                lower = tuple_(literal(boundary[0], table.c.started_at.type), boundary[1])
                stmt = stmt.where(key >= lower)
            compiled = stmt.order_by(*order).compile(
                dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
            )
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:
                sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE ({quoted}))"
                with cursor.copy(sql, compiled.params) as copy:
                    data = b"".join(copy)
                rows = cursor.rowcount
        if rows:
            yield _crlf(data.decode(), rows), rows
        if boundary is None:
            return
        after = (boundary[0], boundary[1])
        if remaining is not None:
            remaining -= rows


def export_chunks(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    fmt: ExportFormat,
    *,
    limit: int | None = None,
) -> Iterator[tuple[str, int]]:
    """``(text, rows in it)`` per batch: RFC 4180 CSV with a header row (``ExportFormat.CSV``),
    or one JSON object per line with the run list's fields (``ExportFormat.NDJSON``)."""
    dialect = engine.dialect.name
    if fmt is ExportFormat.CSV:
        yield ",".join(HEADER) + "\r\n", 0
        writer = _postgresql_csv if dialect == "postgresql" else _sqlite_csv
        yield from writer(engine, project_id, filters, limit=limit)
        return
    if fmt is not ExportFormat.NDJSON:
        raise ValueError(f"unknown export format {fmt!r}")
    for lines in iter_batches(engine, project_id, filters, json_line(dialect), limit=limit):
        yield "\n".join(lines) + "\n", len(lines)


class ExportInterrupted(RuntimeError):
    """An export stopped before its end; what was sent of it is incomplete."""


def _never_silent(chunks: Iterator[tuple[str, int]], fmt: ExportFormat) -> Iterator[str]:
    """The text of ``chunks``; if reading fails part-way, the export does not just end.

    An NDJSON export gets a last line ``{"error": ...}``; then :class:`ExportInterrupted` is
    raised, so that the server breaks off the response instead of finishing it: an HTTP client
    sees an incomplete body (no final chunk), never a short file that looks whole.
    """
    rows = 0
    try:
        for text, count in chunks:
            rows += count
            yield text
    except Exception as exc:
        log.error("the %s export failed after %d rows: %s", fmt, rows, exc, exc_info=exc)
        if fmt is ExportFormat.NDJSON:
            message = f"The export failed after {rows} rows; it is incomplete."
            yield json.dumps({"error": message}) + "\n"
        raise ExportInterrupted(f"the {fmt} export failed after {rows} rows") from exc


def iter_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[str]:
    """The CSV export as chunks of text (see :func:`_never_silent` for a failure midway)."""
    chunks = export_chunks(engine, project_id, filters, ExportFormat.CSV, limit=limit)
    return _never_silent(chunks, ExportFormat.CSV)


def iter_ndjson(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[str]:
    """The NDJSON export as chunks of text (see :func:`_never_silent` for a failure midway)."""
    chunks = export_chunks(engine, project_id, filters, ExportFormat.NDJSON, limit=limit)
    return _never_silent(chunks, ExportFormat.NDJSON)
