"""PostgreSQL: an archived batch deleted and streamed out in one ``COPY (…) TO STDOUT``.

Used by the batch loop (:mod:`taskledger.retention.execute.executor`) for an archived delete
with no side effects and an integer key: the statement is

    COPY (WITH d AS (DELETE FROM t WHERE key = ANY(ARRAY(SELECT key … FOR UPDATE SKIP LOCKED))
          RETURNING t.*)
          SELECT <archive line of d> FROM d ORDER BY key) TO STDOUT

so the server deletes, renders each row's archive line
(:mod:`taskledger.retention.archive.sql_lines`) and sends the lines as they are rendered, one
COPY row each, while the client hands them to the part's compressor: the compression threads
work while the server renders. What is archived is exactly what was deleted, and the batch's
transaction commits only after the part is durable.

COPY's text format escapes a backslash as two, and a line, being JSON, holds no other character
that format escapes (control characters are escaped by JSON itself), so undoing that is one
replace. SQLAlchemy compiles the statement and binds its parameters as for any other; the
dialect's ``do_execute`` hook runs it through psycopg's ``cursor.copy`` instead of ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ClauseElement, Connection, Engine, Executable, event
from sqlalchemy.ext.compiler import compiles

from taskledger.retention.archive.format import MemberCompressor, decode_line
from taskledger.retention.archive.sql_lines import part_line

#: The execution option carrying the callable each COPY row is given to.
_SINK = "taskledger_copy_sink"


class CopyOut(Executable, ClauseElement):
    """``COPY (<query>) TO STDOUT`` (text format), executed with a sink for its rows."""

    # Not cached: a cached statement's result would be matched against its selected columns,
    # which a COPY has none of. Compiling it costs far less than a batch.
    inherit_cache = False

    def __init__(self, query: Any) -> None:
        self.query = query


@compiles(CopyOut, "postgresql")
def _compile_copy(element: CopyOut, compiler: Any, **kw: Any) -> str:
    return f"COPY ({compiler.process(element.query, **kw)}) TO STDOUT"


def _do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    sink: Callable[[Any], None] | None = context.execution_options.get(_SINK)
    if sink is None:
        return False
    with cursor.copy(statement, parameters or None) as copy:
        for data in copy:
            sink(data)
    return True


def enable_copy(engine: Engine) -> None:
    """Let ``engine`` run :class:`CopyOut` statements (once per engine)."""
    if not event.contains(engine, "do_execute", _do_execute):
        event.listen(engine, "do_execute", _do_execute)


def archive_line(row: bytes) -> bytes:
    """A part's line from one COPY row holding an archive line (ending in a newline, as COPY
    ends a row): the doubled backslashes undone, re-encoded as ASCII when it is not."""
    if b"\\" in row:
        row = row.replace(b"\\\\", b"\\")
    return row if row.isascii() else part_line(row[:-1].decode("utf-8"))


class CopiedLines:
    """Receives a COPY of archive lines (in key order) into a part's compressor, keeping what
    the manifest and the next batch need: the count and the first and last lines' keys."""

    def __init__(self, compressor: MemberCompressor, key_column: str) -> None:
        self.compressor = compressor
        self.key_column = key_column
        self.first: bytes | None = None
        self.last: bytes | None = None

    def __call__(self, data: Any) -> None:
        line = archive_line(bytes(data))
        if self.first is None:
            self.first = line
        self.last = line
        self.compressor.add(line)

    @property
    def rows(self) -> int:
        return self.compressor.rows

    def key_range(self) -> tuple[Any, Any]:
        """The first and last rows' keys (``None`` when no row came)."""
        if self.first is None or self.last is None:
            return None, None
        return (
            decode_line(self.first)[self.key_column],
            decode_line(self.last)[self.key_column],
        )


def copy_lines(conn: Connection, statement: CopyOut, sink: CopiedLines) -> None:
    """Run ``statement`` on ``conn`` (in its transaction), each row going to ``sink``."""
    conn.execute(statement, execution_options={_SINK: sink})
