"""PostgreSQL: the whole-partition path of a rule that deletes runs.

When a rule's selection covers every row of a partition of ``runs``
(:mod:`taskledger.store.partitions`), dropping the partition does in one statement, whatever its
size, what a batched delete does row by row (bloating the table and its indexes, for VACUUM to
clean up). For each partition wholly older than the rule's cutoff, in one transaction:

1. ``LOCK TABLE … IN SHARE MODE``: no row of the partition changes from here on (readers go on);
2. **verify** with counts that every row is one the rule selects: ``count(*)`` equals the count
   of the rule's eligible rows (terminal, unheld, in the rule's projects, whatever the rule
   asks). Otherwise the partition is left to the batched path;
3. **archive** its rows as one stream (``COPY (SELECT key, line …) TO STDOUT``, the lines the
   database renders, :mod:`taskledger.retention.archive.sql_lines`), cut into parts of the
   rule's ``batch_size`` rows, each compressed and stored durably, with the manifest, by a
   thread of its own while the next part is read;
4. **drop**: the partition's idempotency keys are removed, then ``DETACH`` and ``DROP``.

A crash before the commit rolls everything back: the partition is whole, and the parts already
stored hold copies of its rows (restore skips what is present). The commit comes after every part
is durable. Partitions a rule covers only in part, and the default partition, go through the
batched path. :func:`partition_paths` says which path each partition takes; the preview reports it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, column, func, literal_column, select, table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import True_
from sqlalchemy.sql.selectable import SelectBase
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import iterate

from taskledger.retention.archive.format import MemberCompressor
from taskledger.retention.archive.sql_lines import line_expression
from taskledger.retention.archive.stores import ArchiveError
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.execute.copy_lines import archive_line
from taskledger.retention.execute.side_effects import table_of
from taskledger.retention.plan.planner import RuleSelection
from taskledger.store.partitions import (
    Partition,
    detach_and_drop,
    forget_keys,
    is_partitioned,
    list_partitions,
)

log = logging.getLogger(__name__)
#: Why an attempt at the DETACH fails and is tried again: the lock on runs was not had in time,
#: or a writer of the partition waited on this run while it waited on that writer.
GIVE_WAY = {"55P03", "40P01"}

#: How long one attempt at the DETACH waits for the lock on ``runs``, how long the pause between
#: two attempts lasts (seconds), and how many attempts there are before the partition is left to
#: the batched path: others wait behind an attempt, so it is short.
DETACH_LOCK_TIMEOUT = "50ms"
DETACH_PAUSE = 0.05
DETACH_ATTEMPTS = 200

Path = Literal["drop", "batched"]


@dataclass(frozen=True)
class PartitionPath:
    """How a rule treats one partition: its rows, the rows it selects, and the path."""

    partition: Partition
    rows: int
    selected: int
    path: Path

    def to_dict(self) -> dict[str, Any]:
        p = self.partition
        return {
            "partition": p.name,
            "lower": p.lower.isoformat() if p.lower else None,
            "upper": p.upper.isoformat() if p.upper else None,
            "rows": self.rows,
            "selected": self.selected,
            "path": self.path,
        }


def applies(conn: Connection, selection: RuleSelection) -> bool:
    """Whether the whole-partition path can apply to ``selection`` at all."""
    return (
        selection.whole_partitions
        and selection.table.name == "runs"
        and selection.rule.action == "delete"
        and selection.rule.age_column == "started_at"
        and is_partitioned(conn)
    )


def _counts(conn: Connection, selection: RuleSelection, partition: Partition) -> tuple[int, int]:
    """(rows, rows the rule selects) in ``partition``, in one scan of the partition itself (no
    range condition to test on each row). A partition wholly older than the cutoff is tested
    only on what the rule asks beyond the age; when that is nothing, its rows are counted from
    its smallest index. A condition that is not about the row alone (a subquery) is tested on
    runs instead, restricted to the partition."""
    runs = selection.table.model.__table__
    condition = selection.eligible
    older = partition.upper is not None and partition.upper <= selection.cutoff
    if older and selection.beyond_age is not None:
        condition = selection.beyond_age
    part = table(partition.name, *(column(c.name, c.type) for c in runs.c))
    if isinstance(condition, True_):
        rows = int(conn.execute(select(func.count()).select_from(part)).scalar_one())
        return rows, rows
    stmt = None
    if not any(isinstance(element, SelectBase) for element in iterate(condition)):
        adapted = ClauseAdapter(
            part, include_fn=lambda c: getattr(c, "table", None) is runs, adapt_on_names=True
        ).traverse(condition)
        stmt = select(func.count(), func.count().filter(adapted)).select_from(part)
        if stmt.get_final_froms() != [part]:  # a column of runs left unadapted: not this way
            stmt = None
    if stmt is None:
        within = [literal_column("runs.tableoid") == func.to_regclass(partition.name)]
        if partition.lower is not None and partition.upper is not None:
            within += [runs.c.started_at >= partition.lower, runs.c.started_at < partition.upper]
        stmt = select(func.count(), func.count().filter(condition)).where(*within)
    rows, selected = conn.execute(stmt).one()
    return int(rows), int(selected)


def partition_paths(conn: Connection, selection: RuleSelection) -> list[PartitionPath] | None:
    """The partitions holding rows of the rule, with their counts and the path each takes:
    ``drop`` for those it selects whole, ``batched`` for the rest (the default partition
    included). Every row the rule selects is in one of them, so their ``selected`` add up to
    the rule's count. ``None`` when the whole-partition path cannot apply (SQLite, another
    table, an action other than delete)."""
    if not applies(conn, selection):
        return None
    # Held to the end of the caller's transaction: no partition is created, detached or dropped
    # between the list and the counts, so each row is counted once, in the partition listed.
    conn.execute(text("LOCK TABLE runs IN ACCESS SHARE MODE"))
    paths = []
    cutoff = selection.cutoff
    for partition in list_partitions(conn):
        if partition.lower is not None and partition.lower >= cutoff:
            continue  # nothing in it is old enough
        rows, selected = _counts(conn, selection, partition)
        if not selected:
            continue
        whole = (
            partition.upper is not None
            and partition.upper <= cutoff
            and not partition.is_default
            and rows == selected
        )
        paths.append(PartitionPath(partition, rows, selected, "drop" if whole else "batched"))
    return paths


def _stream(conn: Connection, selection: RuleSelection, partition: Partition) -> Iterator[bytes]:
    """The partition's rows as ``key<TAB>line`` records (COPY's text format), one by one."""
    lines = line_expression(table_of(selection.table.model), conn.dialect)
    if lines is None:  # pragma: no cover - runs has a line expression on PostgreSQL
        raise ArchiveError("runs has no archive line expression")
    line_sql = str(lines.compile(dialect=conn.dialect))
    key = selection.table.key_column
    sql = f'COPY (SELECT "runs"."{key}", {line_sql} FROM {partition.name} AS "runs") TO STDOUT'  # noqa: S608 - names made here
    raw = conn.connection.driver_connection
    assert raw is not None
    rest = b""
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for chunk in copy:
            records = (rest + bytes(chunk)).split(b"\n")
            rest = records.pop()
            yield from records
    if rest:  # pragma: no cover - COPY ends every record with a newline
        yield rest


def _record(record: bytes) -> tuple[int, bytes]:
    """A COPY record (``key<TAB>line``) as (key, archive line)."""
    key, _, line = record.partition(b"\t")
    return int(key), archive_line(line + b"\n")


#: How many members of a part may wait for the compression threads while the stream is read:
#: the lines not yet compressed stay within a few members, and a part is held compressed.
PENDING_MEMBERS = 2


@dataclass
class _Part:
    """One part being read: its lines go to the compression threads as they come."""

    compressor: MemberCompressor
    low: int | None = None
    high: int | None = None

    def add(self, key: int, line: bytes) -> None:
        self.compressor.add(line)
        self.low = key if self.low is None else min(self.low, key)
        self.high = key if self.high is None else max(self.high, key)


class _PartWriter:
    """Stores parts on a thread of its own, in order, so the next part is read meanwhile."""

    def __init__(self, writer: ArchiveWriter, *, table: str, rule: str) -> None:
        self.writer = writer
        self.table, self.rule = table, rule
        self.parts: queue.Queue[_Part | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="taskledger-parts", daemon=True)
        self.thread.start()

    def new_part(self) -> _Part:
        return _Part(self.writer.compressor(max_pending=PENDING_MEMBERS))

    def _run(self) -> None:
        while (part := self.parts.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write_compressed(
                        self.table,
                        part.compressor,
                        key_min=part.low,
                        key_max=part.high,
                        rule=self.rule,
                        action="delete",
                    )
                except BaseException as exc:  # re-raised by the reading thread
                    self.error = exc
            del part  # stored: nothing of it is held while the next one is waited for
            self.parts.task_done()

    def put(self, part: _Part) -> None:
        """Hand ``part`` over once the one before it is stored: two parts in hand at most."""
        self.parts.join()
        self._raise()
        self.parts.put(part)

    def finish(self) -> None:
        """Wait until every part is durable (or raise why one is not)."""
        self.parts.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def archive_partition(
    conn: Connection,
    selection: RuleSelection,
    partition: Partition,
    writer: ArchiveWriter,
    progress: Callable[[int], None],
) -> int:
    """Archive every row of ``partition`` in parts of ``batch_size`` rows; returns the rows
    archived. Each part's lines are compressed as they are read (at most
    :data:`PENDING_MEMBERS` members waiting), and at most two parts are in hand at once: one
    being read, one being stored. Every part is durable when this returns;
    ``progress`` is told the rows of each part as it is handed over."""
    parts = _PartWriter(writer, table=selection.table.name, rule=selection.rule.name)
    part = parts.new_part()
    total = 0
    try:
        for record in _stream(conn, selection, partition):
            part.add(*_record(record))
            if part.compressor.rows >= selection.batch_size:
                parts.put(part)
                total += part.compressor.rows
                progress(part.compressor.rows)
                part = parts.new_part()
        if part.compressor.rows:
            parts.put(part)
            total += part.compressor.rows
            progress(part.compressor.rows)
    finally:
        parts.finish()
    return total


def drop_covered(
    conn: Connection,
    selection: RuleSelection,
    writer: ArchiveWriter | None,
    *,
    admit: Callable[[int], None],
    done: Callable[[PartitionPath], None],
    progress: Callable[[int], None],
) -> None:
    """Take the whole-partition path for every partition ``selection`` covers whole. ``admit``
    is called with a partition's row count before anything is archived (it raises to stop the
    run over its plan); ``progress`` with the rows of each archive part (or of the partition,
    unarchived); ``done`` after each partition is committed gone."""
    with conn.begin():
        candidates = [
            p
            for p in (list_partitions(conn) if applies(conn, selection) else [])
            if p.lower is not None and p.upper is not None and p.upper <= selection.cutoff
        ]
    # Each is counted once, under its lock (see _drop): counting first as well would double
    # the cost of the path.
    for partition in candidates:
        rows = _drop(conn, selection, partition, writer, admit, progress)
        if rows:
            done(PartitionPath(partition, rows, rows, "drop"))


def _waited_on(conn: Connection, partition: Partition) -> bool:
    """Whether another transaction waits for a lock on ``partition`` (which this run holds)."""
    waiting = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = to_regclass(:p) "
            "AND NOT granted)"
        ),
        {"p": partition.name},
    )
    return bool(waiting.scalar())


class _NoLock(Exception):
    """The DETACH never got its lock: the partition is left to the batched path."""


def _drop(
    conn: Connection,
    selection: RuleSelection,
    partition: Partition,
    writer: ArchiveWriter | None,
    admit: Callable[[int], None],
    progress: Callable[[int], None],
) -> int:
    """One partition, in one transaction; returns its rows, or 0 when it is left to the
    batched path (or is empty)."""
    try:
        with conn.begin():
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(text(f"LOCK TABLE {partition.name} IN SHARE MODE"))
            rows, selected = _counts(conn, selection, partition)
            if not rows or rows != selected:
                return 0  # not every row is the rule's: the batched path takes those that are
            admit(rows)
            if selection.rule.archive:
                if writer is None:
                    raise RuntimeError(f"rule {selection.rule.name!r} archives but no archive")
                archived = archive_partition(conn, selection, partition, writer, progress)
                if archived != rows:  # pragma: no cover - the partition is locked
                    raise ArchiveError(f"{partition.name}: {archived} rows archived of {rows}")
            else:
                progress(rows)
            forget_keys(conn, partition)
            _detach_and_drop(conn, partition)
    except _NoLock:
        # Rolled back: the rows are all still there (and copies of them in the parts already
        # stored); the batched path takes them.
        log.warning("%s: no lock to detach it; deleting its rows in batches", partition.name)
        return 0
    return rows


def _detach_and_drop(conn: Connection, partition: Partition) -> None:
    """``DETACH`` and ``DROP``, then the caller commits at once. The DETACH needs runs to
    itself (ACCESS EXCLUSIVE), and while it waits for the readers of runs to finish, every new
    reader and writer waits behind it: so it waits :data:`DETACH_LOCK_TIMEOUT` at most, and is
    tried again after a pause, :data:`DETACH_ATTEMPTS` times."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
    for _ in range(DETACH_ATTEMPTS):
        if _waited_on(conn, partition):
            # A writer of the partition (another delete of its rows) waits for this run while
            # holding its lock on runs: waiting for runs now would close a cycle. It gets the
            # partition; the batched path takes what remains.
            raise _NoLock(partition.name)
        try:
            with conn.begin_nested():
                detach_and_drop(conn, partition)
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in GIVE_WAY:
                raise
        time.sleep(DETACH_PAUSE)
    raise _NoLock(partition.name)
