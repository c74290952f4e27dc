"""Streaming run exports (CSV and NDJSON) in constant memory, with no row cap.

The CSV is written by the fastest writer at hand on each backend, with the same bytes on both.
On PostgreSQL the server's own CSV writer does nearly all: one ``COPY (SELECT ...) TO STDOUT``
of the header and every row, in one read-only transaction (one snapshot, which MVCC lets
writers go on beside), the cells SQL has formatted (the spreadsheet formula guard) streamed as
the raw bytes COPY sends; timestamps come as the server's own text behind a marker, which the
client puts in the export's format (:func:`_pg_times`). On SQLite, whose SQL functions cost
more per cell than Python, the stored values are read in keyset batches, each in its own short
read transaction (so a long export never pins an old snapshot of the WAL), and formatted in
Python. NDJSON objects are rendered in SQL, read in keyset batches on both backends.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
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
    literal_column,
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
    key_at: tuple[int, int] | None = None,
) -> Iterator[Sequence[Sequence[Any]]]:
    """Yield the rows of ``selected`` (newest run first), one list per keyset batch.

    The key (``started_at``, ``id``) is read from two more columns at the end of each row, or,
    with ``key_at``, from those positions of ``selected``, which must then hold ``started_at``
    as the key compares it (on SQLite its stored text, ``type_coerce(..., String)``; elsewhere
    the column itself) and ``id``.
    """
    table = Run.__table__
    # On SQLite the key is compared as the stored text: no conversion on either side.
    started = type_coerce(table.c.started_at, String) if is_sqlite(engine) else table.c.started_at
    key_id = table.c.id
    at = key_at or (len(selected), len(selected) + 1)
    columns = list(selected) if key_at else [*selected, started, key_id]
    base = select(*columns).where(and_(*filter_conditions(project_id, filters)))
    last: tuple[Any, int] | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        stmt = base
        if last is not None:
            bound = tuple_(literal(last[0], started.type), literal(last[1], key_id.type))
            stmt = stmt.where(tuple_(started, key_id) < bound)
        stmt = stmt.order_by(table.c.started_at.desc(), key_id.desc()).limit(size)
        # A connection per batch: a client that reads slowly holds no pool slot between them.
        with engine.connect() as conn:
            result = conn.execute(stmt)
            rows = result.cursor.fetchall()  # the driver's rows, no result processing
            result.close()
        if not rows:
            return
        last = (rows[-1][at[0]], rows[-1][at[1]])
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


# --- CSV on SQLite: stored values, formatted in Python by f-strings per row -----------------


def _quote(value: str) -> str:
    """A text cell: always quoted, inner quotes doubled, formulas guarded."""
    if value[:1] in _FORMULA_STARTS:
        value = "'" + value
    return '"' + value.replace('"', '""') + '"'


def _quote_json(value: str | float | None) -> str:
    """A JSON cell. SQLite gives the JSON column numeric affinity, so a JSON number comes back
    as an int or a float, not as its text."""
    if value is None:
        return ""
    return _quote(value if isinstance(value, str) else json.dumps(value))


def _dashed(value: str | None) -> str:
    if value is None:
        return ""
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _quote_or_empty(value: str | None) -> str:
    return "" if value is None else _quote(value)


class _Memo(dict[Any, str]):
    """The cells of one column already written, by stored value: a column with few distinct
    values (task names, agents) is formatted once per value, not once per row."""

    __slots__ = ("cell",)

    def __init__(self, cell: Callable[[Any], str]) -> None:
        super().__init__()
        self.cell = cell

    def __missing__(self, value: Any) -> str:
        cell = self[value] = self.cell(value)
        return cell


#: Columns whose values usually repeat from row to row (task names, the few approval states
#: and approvers, agents and tasks): their cells are looked up in a memo.
_MEMOISED = frozenset({"task", "approval_state", "approver", "agent_id", "task_id"})
#: A memo holding more than this many values after a batch is emptied, so memory stays flat
#: whatever the data: at most this and a batch's worth of cells per memo.
MEMO_VALUES = 4096

# How each kind of stored value becomes its cell, as an f-string fragment on "@" (the value), for
# a NOT NULL column and for a nullable one (a column of _MEMOISED goes through a _Memo of the
# cell function of its kind, _MEMO_CELL, instead). Text is quoted as by _quote, written out:
# measured 5% faster than calling it. Times are stored as naive UTC text
# 'YYYY-MM-DD HH:MM:SS.ffffff', UUIDs as 32 hex digits.
_SQLITE_CELLS: dict[str, tuple[str, str]] = {
    "int": ("{@}", "{'' if @ is None else @}"),
    "enum": ("{@}", "{'' if @ is None else @}"),
    "time": (
        "{@.replace(' ', 'T')}+00:00",
        "{'' if @ is None else @.replace(' ', 'T') + '+00:00'}",
    ),
    "uuid": ("{_dashed(@)}",) * 2,
    "text": (
        '\\"{(A + @ if @[:1] in F else @).replace(Q, QQ)}\\"',
        "{'' if @ is None else Q + (A + @ if @[:1] in F else @).replace(Q, QQ) + Q}",
    ),
    "json": ("{_quote_json(@)}",) * 2,
}
_MEMO_CELL: dict[str, Callable[[Any], str]] = {"uuid": _dashed, "text": _quote_or_empty}


def _row_formatter() -> tuple[Callable[[Sequence[Sequence[Any]]], str], list[_Memo]]:
    """A function from stored rows to their CSV records (CRLF after each), and its memos.

    It evaluates f-strings generated from :data:`COLUMNS` on each row: no function call, list
    or tuple per cell but for JSON; a column of :data:`_MEMOISED` is looked up in a memo
    (docs/benchmarks.md, "Export"). Each export makes its own, so memos are never shared.
    """
    cells, memos = [], []
    scope: dict[str, Any] = {
        "_quote_json": _quote_json,
        "_dashed": _dashed,
        "A": "'",
        "Q": '"',
        "QQ": '""',
        "F": _FORMULA_STARTS,
    }
    for index, (name, column, kind) in enumerate(COLUMNS):
        value = f"c{index}"
        if name in _MEMOISED:
            memo = _Memo(_MEMO_CELL[kind])
            scope[f"memo_{name}"] = memo
            memos.append(memo)
            cells.append(f"{{memo_{name}[{value}]}}")
        else:
            fragment = _SQLITE_CELLS[kind][1 if column.nullable else 0]
            cells.append(fragment.replace("@", value))
    # An f-string of more than about 30 pieces compiles to a list and a join per row: the record
    # is written as two f-strings of a half each, which compile to one string build each.
    half = len(cells) // 2
    record = f'f"{",".join(cells[:half])}," + f"{",".join(cells[half:])}\\r\\n"'
    names = ", ".join(f"c{index}" for index in range(len(COLUMNS)))
    source = f'lambda rows: "".join([{record} for {names} in rows])'
    formatter: Callable[[Sequence[Sequence[Any]]], str] = eval(source, scope)  # noqa: S307
    return formatter, memos


#: Rows per keyset batch of a SQLite CSV export: a batch this size stays in the CPU's caches
#: from the read to the bytes (measured faster than 5,000; docs/benchmarks.md, "Export").
SQLITE_CSV_BATCH = 2000
_KEY_AT = (HEADER.index("started_at"), HEADER.index("id"))


def _sqlite_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None
) -> Iterator[tuple[bytes, int]]:
    # Read the stored values untouched (no type processing), as SQLite's own CLI would.
    selected = [
        column if kind == "int" else type_coerce(column, String) for _, column, kind in COLUMNS
    ]
    records, memos = _row_formatter()
    yield (",".join(HEADER) + "\r\n").encode(), 0
    for rows in _keyset_batches(
        engine,
        project_id,
        filters,
        selected,
        limit=limit,
        batch_size=SQLITE_CSV_BATCH,
        key_at=_KEY_AT,
    ):
        yield records(rows).encode(), len(rows)
        for memo in memos:
            if len(memo) > MEMO_VALUES:
                memo.clear()


# --- CSV on PostgreSQL: one COPY (SELECT ...) TO STDOUT (FORMAT csv) -------------------------

#: How many bytes of COPY output are gathered into one chunk of the stream.
COPY_CHUNK = 256 * 1024
#: What starts a timestamp cell in the COPY output (see :func:`_pg_times`).
_TIME_MARK = b',"='
#: The export's timestamp format, in to_char's terms (the transaction's time zone is UTC).
_PG_TIME = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
#: Timestamp columns the server writes in the export's format itself: the formatting is split
#: between the database process and the client so that neither waits long on the other
#: (rewriting every timestamp made the client the slower one; docs/benchmarks.md, "Export").
_SERVER_TIMES = frozenset({"updated_at"})


def _pg_guard(text: ColumnElement[Any]) -> ColumnElement[Any]:
    """Prefix a quote to cells a spreadsheet would run as a formula (NULL stays NULL)."""
    # ascii() is the first character's code point (0 for ''): cheaper than a substring.
    codes = [ord(c) for c in FORMULA_PREFIXES]
    return case((func.ascii(text).in_(codes), literal("'").concat(text)), else_=text)


def _copy_cell(name: str, column: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
    if kind == "text":
        return _pg_guard(type_coerce(column, String))
    if kind == "json":
        # Of the JSON texts only a negative number starts with a formula character ('-'). Testing
        # the value, not its text, spares converting it to text twice per row.
        text = cast(column, Text)
        zero: ColumnElement[Any] = literal_column("'0'::jsonb")
        negative = and_(func.jsonb_typeof(column) == "number", column < zero)
        return case((negative, literal("'").concat(text)), else_=text)
    if kind == "time" and name in _SERVER_TIMES:
        return func.to_char(column, _PG_TIME)
    if kind == "time":
        # The server's own text (cheaper than to_char's by half), marked: see _pg_times.
        return literal("=").concat(cast(column, Text))
    return column  # int, enum, uuid: COPY's own text is the export's


# The text PostgreSQL writes for a timestamptz with DateStyle ISO in UTC: fractional digits
# trimmed of trailing zeros (none if the fraction is zero), ' BC' for years before 1.
_PG_TIME_TEXT = re.compile(rb"(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00(?: BC)?")
# A cell of the common shape has a space at 10 (a four-digit year), a point at 19 and '+00"'
# at 26 to 29 (six fractional digits): nothing else can hold all three, whatever cell follows.
_FAST_END = slice(26, 30)


def _pg_time_cell(piece: bytes) -> bytes:
    """A marked cell that is not of the common shape: the export's text for it, exactly as
    ``to_char(ts, _PG_TIME)`` writes it (empty for infinity)."""
    end = piece.index(b'"')  # the cell's closing quote: the server's text holds no quote
    text = piece[:end]
    if text in (b"infinity", b"-infinity"):
        return b"," + piece[end + 1 :]  # to_char gives NULL for them
    match = _PG_TIME_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"unexpected timestamp text from the database: {text!r}")
    day, clock, fraction = match.groups()
    return b",%bT%b.%b+00:00%b" % (day, clock, (fraction or b"").ljust(6, b"0"), piece[end + 1 :])


def _pg_times(data: bytes) -> bytes:
    """The export's timestamps in ``data`` (whole records of COPY output), in place of the
    server's: ``,"=2025-01-02 03:04:06.5+00"`` becomes ``,2025-01-02T03:04:06.500000+00:00``.

    The marker ``,"=`` (a delimiter, an opening quote, an equals sign) is found nowhere else:
    every text and JSON cell is quoted and guarded, so none starts with ``=`` (it would start
    with ``'=``); inside a quoted cell every quote is doubled, so ``"=`` there is preceded by a
    quote, never by a delimiter; the other cells (ints, UUIDs, statuses) are never quoted. The
    first cell of a record is the id. A NULL timestamp is an empty cell, unmarked.
    """
    pieces = data.split(_TIME_MARK)
    if len(pieces) == 1:
        return data
    fast = b'+00"'
    return pieces[0] + b"".join(
        [
            b",%bT%b+00:00%b" % (piece[:10], piece[11:26], piece[30:])
            if piece[_FAST_END] == fast and piece[10] == 32 and piece[19] == 46
            else _pg_time_cell(piece)
            for piece in pieces[1:]
        ]
    )


def _crlf(records: list[Any]) -> bytes:
    """COPY ends records with LF, the export with CRLF. The server sends one record per
    message, so each message's last byte is the record's end; any other LF is inside a cell."""
    data = b"".join(records)
    if data.count(b"\n") == len(records):
        return data.replace(b"\n", b"\r\n")
    return b"\r\n".join([record[:-1] for record in records]) + b"\r\n"


def _postgresql_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None
) -> Iterator[tuple[bytes, int]]:
    """The whole export as one COPY of the header and every row, in one read-only transaction
    (one snapshot: MVCC lets writers go on meanwhile)."""
    table = Run.__table__
    stmt = (
        select(*(_copy_cell(*spec).label(spec[0]) for spec in COLUMNS))
        .where(*filter_conditions(project_id, filters))
        .order_by(table.c.started_at.desc(), table.c.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    # Labelled with the export's names, which the header shows and FORCE_QUOTE refers to.
    quoted = ", ".join(
        name
        for name, _, kind in COLUMNS
        if kind in ("text", "json") or (kind == "time" and name not in _SERVER_TIMES)
    )
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        # The timestamps' text, which _pg_times reads: ISO, in UTC, whatever the server's defaults.
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, MDY'")
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE ({quoted}))"
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(sql, compiled.params) as copy:
            records: list[Any] = []
            size = 0
            header = 1  # the first record is the header row
            for record in copy:
                records.append(record)
                size += len(record)
                if size >= COPY_CHUNK:
                    yield _pg_times(_crlf(records)), len(records) - header
                    records, size, header = [], 0, 0
            if records:
                yield _pg_times(_crlf(records)), len(records) - header


def export_chunks(
    engine: Engine,
    project_id: uuid.UUID,
    filters: RunFilters,
    fmt: ExportFormat,
    *,
    limit: int | None = None,
) -> Iterator[tuple[bytes, int]]:
    """``(UTF-8 bytes, rows in them)`` chunk by chunk: RFC 4180 CSV with a header row
    (``ExportFormat.CSV``), or one JSON object per line with the run list's fields
    (``ExportFormat.NDJSON``)."""
    dialect = engine.dialect.name
    if fmt is ExportFormat.CSV:
        writer = _postgresql_csv if dialect == "postgresql" else _sqlite_csv
        yield from writer(engine, project_id, filters, limit=limit)
        return
    if fmt is not ExportFormat.NDJSON:
        raise ValueError(f"unknown export format {fmt!r}")
    for lines in iter_batches(engine, project_id, filters, json_line(dialect), limit=limit):
        yield ("\n".join(lines) + "\n").encode(), len(lines)


class ExportInterrupted(RuntimeError):
    """An export stopped before its end; what was sent of it is incomplete."""


def _never_silent(chunks: Iterator[tuple[bytes, int]], fmt: ExportFormat) -> Iterator[bytes]:
    """The bytes of ``chunks``; if reading fails part-way, the export does not just end.

    An NDJSON export gets a last line ``{"error": ...}``; then :class:`ExportInterrupted` is
    raised, so that the server breaks off the response instead of finishing it: an HTTP client
    sees an incomplete body (no final chunk), never a short file that looks whole.
    """
    rows = 0
    try:
        for data, count in chunks:
            rows += count
            yield data
    except Exception as exc:
        log.error("the %s export failed after %d rows: %s", fmt, rows, exc, exc_info=exc)
        if fmt is ExportFormat.NDJSON:
            message = f"The export failed after {rows} rows; it is incomplete."
            yield (json.dumps({"error": message}) + "\n").encode()
        raise ExportInterrupted(f"the {fmt} export failed after {rows} rows") from exc


def iter_csv(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[bytes]:
    """The CSV export as chunks of UTF-8 bytes (:func:`_never_silent`: a failure midway)."""
    chunks = export_chunks(engine, project_id, filters, ExportFormat.CSV, limit=limit)
    return _never_silent(chunks, ExportFormat.CSV)


def iter_ndjson(
    engine: Engine, project_id: uuid.UUID, filters: RunFilters, *, limit: int | None = None
) -> Iterator[bytes]:
    """The NDJSON export as chunks of UTF-8 bytes (:func:`_never_silent`: a failure midway)."""
    chunks = export_chunks(engine, project_id, filters, ExportFormat.NDJSON, limit=limit)
    return _never_silent(chunks, ExportFormat.NDJSON)
