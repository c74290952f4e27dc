"""Fast bulk inserts for large loads (demo data, imports, restore, benchmarks).

The ORM and Core both run Python type processors for every value; at a million rows that is most
of the cost. Here values are rendered once, exactly as the column types would store them, and
handed to the driver: ``executemany`` on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Boolean, Connection, Table, Uuid

from taskledger.store.types import UTCDateTime

Render = Callable[[Any], Any]


def _keep(value: Any) -> Any:
    return value


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    # The same text UTCDateTime stores: naive UTC with six fractional digits (the slice drops
    # the "+00:00").
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_uuid(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _sqlite_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _pg_json(value: Any) -> Any:
    return None if value is None else Jsonb(value)


def renderers(table: Table, columns: Sequence[str], dialect: str) -> list[Render]:
    """One function per column turning a Python value into what the driver should receive."""
    out: list[Render] = []
    for name in columns:
        column_type = table.c[name].type  # also checks that the column exists
        if dialect == "sqlite":
            if isinstance(column_type, UTCDateTime):
                out.append(_sqlite_time)
            elif isinstance(column_type, Uuid):
                out.append(_sqlite_uuid)
            elif isinstance(column_type, JSON):
                out.append(_sqlite_json)
            elif isinstance(column_type, Boolean):
                out.append(_sqlite_bool)
            else:
                out.append(_keep)
        elif isinstance(column_type, JSON):  # JSONB on PostgreSQL, through the variant
            out.append(_pg_json)
        else:
            out.append(_keep)
    return out


def render_rows(
    table: Table, columns: Sequence[str], dialect: str, rows: Iterable[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """``rows`` (tuples in ``columns`` order) as the driver should receive them."""
    render = renderers(table, columns, dialect)
    rows = list(rows)
    if not rows:
        return []
    # Column by column: map() and zip() keep the per-value work in C where they can.
    by_column = [
        values if f is _keep else list(map(f, values))
        for f, values in zip(render, zip(*rows, strict=True), strict=True)
    ]
    return list(zip(*by_column, strict=True))


def insert_rendered(
    conn: Connection, table: Table, columns: Sequence[str], rendered: Sequence[tuple[Any, ...]]
) -> int:
    """Insert rows already passed through :func:`render_rows`, in the caller's transaction."""
    if not rendered:
        return 0
    names = ", ".join(f'"{c}"' for c in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
        ):
            for row in rendered:
                copy.write_row(row)
        return len(rendered)
    marks = ", ".join("?" for _ in columns)
    # Table and column names come from the model (checked by render_rows), never from input.
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'  # noqa: S608
    conn.exec_driver_sql(sql, list(rendered))
    return len(rendered)


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in the caller's transaction.

    Returns the number of rows written.
    """
    rendered = render_rows(table, columns, conn.dialect.name, rows)
    return insert_rendered(conn, table, columns, rendered)
