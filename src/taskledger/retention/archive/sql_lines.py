"""Archive lines built by the database: one SQL expression per table that renders a row as the
JSON line :func:`~taskledger.retention.archive.format.encode_row` would write.

Fetching whole rows into Python objects, then encoding them back to JSON, is most of the cost
of an archived batch. The database can do both in C: the executor selects each row's key and its
line, and the archive part is those lines, gzipped.

On PostgreSQL the line is a plain string concatenation, ``'{"a":' || <a> || ',"b":' || <b> ||
'}'``; on SQLite it is ``json_object('a', <a>, 'b', <b>)``. Columns come in sorted order, each
value rendered as the Python encoding renders it:

- integers as numbers, booleans as ``true``/``false``, text as a JSON string;
- UUIDs as their hyphenated lowercase text (SQLite stores 32 hex digits: the hyphens are put in);
- timestamps as ISO 8601 in UTC with ``+00:00``, microseconds only when there are some;
- JSON columns as the database renders the stored JSON (PostgreSQL ``jsonb`` puts a space after
  ``:`` and ``,``; nested keys keep the database's order). The values are the same JSON values.

A table with a column of any other type has no expression (:func:`line_expression` returns
``None``) and is archived through Python. On SQLite, a row holding a value the app would not have
written (a timestamp in another spelling, JSON that ``json()`` refuses, such as ``NaN``) gets a
NULL line, and that row is encoded in Python. Lines holding characters outside ASCII are re-encoded
in Python (:func:`part_line`), so a part is ASCII either way; a test checks, on both backends,
that every line decodes to what the Python encoding gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache

from sqlalchemy import JSON, Boolean, Integer, String, Table, Uuid, literal_column
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Text

from taskledger.retention.archive.format import decode_line, encode_row
from taskledger.store.types import UTCDateTime

# Each renders one column (its quoted name) as JSON text, 'null' when the value is NULL.
_Render = Callable[[str], str]

_POSTGRESQL: dict[str, _Render] = {
    "datetime": lambda c: (
        f"CASE WHEN {c} IS NULL THEN 'null' ELSE '\"' || "
        f"to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
        f"coalesce(nullif('.' || to_char({c}, 'US'), '.000000'), '') || '+00:00\"' END"
    ),
    "uuid": lambda c: f"coalesce('\"' || {c}::text || '\"', 'null')",
    # jsonb's text has no line breaks (a json column's text is kept as written, so it is cast).
    "json": lambda c: f"coalesce({c}::jsonb::text, 'null')",
    "boolean": lambda c: f"CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' ELSE 'null' END",
    "integer": lambda c: f"coalesce({c}::text, 'null')",
    "text": lambda c: f"coalesce(to_json({c})::text, 'null')",
}

# SQLite builds the line with json_object(): each render is a value it takes (text is quoted,
# numbers are not, json() marks JSON).
_SQLITE: dict[str, _Render] = {
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC), or without the fraction
    # (CURRENT_TIMESTAMP); see _SQLITE_USUAL.
    "datetime": lambda c: (
        f"CASE WHEN {c} IS NULL THEN NULL "
        f"WHEN length({c}) = 26 AND substr({c}, 20) = '.000000' "
        f"THEN substr({c}, 1, 10) || 'T' || substr({c}, 12, 8) || '+00:00' "
        f"ELSE replace({c}, ' ', 'T') || '+00:00' END"
    ),
    # Stored as 32 lowercase hex digits.
    "uuid": lambda c: (
        f"substr({c}, 1, 8) || '-' || substr({c}, 9, 4) || '-' || substr({c}, 13, 4) || '-' || "
        f"substr({c}, 17, 4) || '-' || substr({c}, 21)"
    ),
    "json": lambda c: f"json({c})",
    "boolean": lambda c: f"CASE {c} WHEN 1 THEN json('true') WHEN 0 THEN json('false') END",
    "integer": lambda c: c,
    "text": lambda c: c,
}
# SQLite's dynamic types let a column hold what the app never writes (text from elsewhere, JSON
# with NaN, which json() refuses). A row whose values are not all in the app's own spelling gets
# no line (NULL), and the executor encodes that row in Python.
_SQLITE_USUAL: dict[str, _Render] = {
    "datetime": lambda c: (
        f"({c} IS NULL OR (substr({c}, 11, 1) = ' ' AND (length({c}) = 19 OR "
        f"(length({c}) = 26 AND substr({c}, 20, 1) = '.'))))"
    ),
    "uuid": lambda c: f"({c} IS NULL OR length({c}) = 32)",
    "json": lambda c: f"({c} IS NULL OR json_valid({c}))",
}
#: json_object() takes at most 127 arguments (SQLite's default limit): 63 columns.
_SQLITE_MAX_COLUMNS = 63

_DIALECTS = {"postgresql": _POSTGRESQL, "sqlite": _SQLITE}


def _kind(column_type: object) -> str | None:
    # Most specific first: Text is a String, BigInteger an Integer.
    kinds: tuple[tuple[type, str], ...] = (
        (UTCDateTime, "datetime"),
        (Uuid, "uuid"),
        (JSON, "json"),
        (Boolean, "boolean"),
        (Integer, "integer"),
        (String, "text"),
    )
    for kind, name in kinds:
        if isinstance(column_type, kind):
            return name
    return None


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(name: str) -> str:
    """An SQL identifier, quoted as both dialects quote it."""
    return '"' + name.replace('"', '""') + '"'


@cache
def _line_sql(table: Table, dialect_name: str, alias: str | None = None) -> str | None:
    renders = _DIALECTS.get(dialect_name)
    columns = sorted(table.columns, key=lambda c: c.name)
    kinds = [_kind(column.type) for column in columns]
    if renders is None or not columns or None in kinds:
        return None
    source = _quote(alias or table.name)
    values = [
        (column.name, renders[kind](f"{source}.{_quote(column.name)}"))
        for column, kind in zip(columns, kinds, strict=True)
        if kind is not None
    ]
    if dialect_name == "sqlite":
        if len(values) > _SQLITE_MAX_COLUMNS:
            return None
        line = "json_object(" + ", ".join(f"{_sql_string(n)}, {v}" for n, v in values) + ")"
        checks = [
            _SQLITE_USUAL[kind](f"{source}.{_quote(column.name)}")
            for column, kind in zip(columns, kinds, strict=True)
            if kind in _SQLITE_USUAL
        ]
        return f"CASE WHEN {' AND '.join(checks)} THEN {line} END" if checks else line
    pieces = [
        f"{_sql_string(('{' if number == 0 else ',') + json.dumps(name) + ':')} || {value}"
        for number, (name, value) in enumerate(values)
    ]
    return " || ".join(pieces) + " || '}'"


def line_expression(
    table: Table, dialect: Dialect, *, alias: str | None = None
) -> ColumnElement[str] | None:
    """The SQL expression rendering a row of ``table`` as its archive line (without the newline),
    or ``None`` when the dialect or one of the table's column types has none. With ``alias``,
    the columns are those of that name in the query (a CTE returning the table's rows)."""
    sql = _line_sql(table, dialect.name, alias)
    return None if sql is None else literal_column(f"({sql})", type_=Text)


def part_line(line: str) -> bytes:
    """A line from :func:`line_expression` as a part's line: ASCII, ending in a newline.

    A line holding any other character is decoded and encoded again in Python, which escapes it
    (as ``\\uXXXX``) the way every other line is written.
    """
    return (line + "\n").encode("ascii") if line.isascii() else encode_row(decode_line(line))
