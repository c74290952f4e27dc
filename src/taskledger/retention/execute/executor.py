"""The executor: applies a plan batch by batch, archiving every row before it changes.

One short transaction per batch: select the next batch in key order (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``, which takes the write lock up front), capture what the
database's cascades would take with it, write all of it to a durable archive part, apply the
action, commit. A crash at any point leaves every row in the database, in the archive, or both;
restore is idempotent, so "both" is harmless. The executor reports through a callback and a
returned report; it never prints. What a delete takes with it is captured by
:mod:`.side_effects`; on SQLite, the pauses between batches are :mod:`.sqlite_pacing`'s.

Batches are sized by time (:mod:`.batch_sizing`): each rule's first batch is 1,000 rows (or its
``batch_size``, when smaller), and each next one is sized from the rate the last one ran at, so
that a write transaction takes about the policy's ``batch_time_budget``, never more rows than
``batch_size``.

Archived rows are rendered as archive lines by the database
(:mod:`taskledger.retention.archive.sql_lines`), and each line goes to the part's compressor as
it is read (:class:`~taskledger.retention.archive.format.MemberCompressor`): compressing overlaps
with reading the batch and, on SQLite, with its DELETE. On PostgreSQL an archived delete that
takes nothing else with it is a single statement per batch: ``DELETE … WHERE key =
ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED)) RETURNING`` the lines, streamed with ``COPY`` when
the key is an integer (:mod:`.copy_lines`). Either way the part is made durable before the
commit, so a failure to write it rolls the batch back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from taskledger.enums import PartAction
from taskledger.errors import SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive.format import MemberCompressor, encode_row
from taskledger.retention.archive.sql_lines import line_expression, part_line
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.execute.batch_sizing import first_batch_size, next_batch_size
from taskledger.retention.execute.copy_lines import CopiedLines, CopyOut, copy_lines, enable_copy
from taskledger.retention.execute.partitions import PartitionPath, drop_covered
from taskledger.retention.execute.side_effects import (
    SIDE_EFFECTS,
    SideEffect,
    apply_side_effects,
    capture_side_effects,
    fetch_rows,
    table_of,
)
from taskledger.retention.execute.sqlite_pacing import BetweenBatches
from taskledger.retention.plan.planner import Plan, RuleSelection
from taskledger.store.engine import is_sqlite

#: Called after each batch with (rule name, rows handled); restore calls it with (table name,
#: archived rows handled).
Progress = Callable[[str, int], None]

#: A rule may affect this share more rows than its plan counted before the run stops.
OVERRUN_TOLERANCE = 0.10


class PlanExceeded(SafeguardRefused):
    """A rule reached more rows than its plan allows (rows came of age behind the plan's back)."""


def overrun_limit(matched: int) -> int:
    """The most rows a rule planned at ``matched`` may affect: 10 % more, rounded down."""
    return matched + int(matched * OVERRUN_TOLERANCE)


@dataclass
class RuleOutcome:
    """What one rule did."""

    name: str
    table: str
    action: str
    archive: bool
    matched: int = 0
    affected: int = 0
    batches: int = 0
    cascaded: dict[str, int] = field(default_factory=dict)
    unlinked: dict[str, int] = field(default_factory=dict)
    #: PostgreSQL: the partitions of runs dropped whole (see :mod:`.partitions`).
    partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "action": self.action,
            "archive": self.archive,
            "matched": self.matched,
            "affected": self.affected,
            "batches": self.batches,
            "cascaded": self.cascaded,
            "unlinked": self.unlinked,
            "partitions_dropped": self.partitions,
        }


def _exact(selection: RuleSelection) -> bool:
    """Whether a batch must be exactly the rows read: they are archived, or scrubbed from what
    was read. Otherwise any row still eligible when the statement runs may go with the batch."""
    return selection.rule.archive or selection.rule.action == "scrub"


def _batch(conn: Connection, selection: RuleSelection, keys: list[Any]) -> ColumnElement[bool]:
    """The rows of a batch, for its DELETE or UPDATE, without one bound parameter per key.

    SQLite: the batch was selected under the write lock (``BEGIN IMMEDIATE``), so the eligible
    rows from its first key to its last are exactly the batch, an index range. PostgreSQL, when
    the batch need not be exact: the same range, each row's eligibility checked again as the
    statement reaches it (so no row lock is taken ahead). Otherwise ``SKIP LOCKED`` may have left
    gaps in that range, so the keys themselves, as one array.
    """
    key = selection.key
    if is_sqlite(conn) or not _exact(selection):
        return and_(selection.eligible, key >= keys[0], key <= keys[-1])
    in_batch: ColumnElement[bool] = key == any_(bindparam("keys", keys, type_=ARRAY(key.type)))
    return in_batch


@dataclass
class _Batch:
    """The rows of one batch as read: their keys, and whole rows or archive lines when needed."""

    keys: list[Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[bytes] | None = None
    #: The batch's archive lines, given to the part's compressor as they were read.
    compressed: MemberCompressor | None = None
    #: How many rows, when ``keys`` holds only the first and last (a COPY of lines).
    count: int | None = None

    @property
    def size(self) -> int:
        """The rows in the batch."""
        return len(self.keys) if self.count is None else self.count

    @classmethod
    def read(
        cls,
        conn: Connection,
        stmt: Any,
        selection: RuleSelection,
        *,
        whole: bool,
        lines: bool,
        compressor: MemberCompressor | None = None,
    ) -> _Batch:
        """Read a batch. With ``compressor``, archive lines are given to it as they are read,
        so that they are compressed while the rest are read (and while the batch is applied);
        the batch then has ``compressed`` (every line of the batch, in key order) instead of
        ``lines``. A row the database did not render makes it ``lines`` after all."""
        if whole:
            rows = fetch_rows(conn, stmt)
            return cls([row[selection.table.key_column] for row in rows], rows)
        if lines:
            keys: list[Any] = []
            rendered: list[str | None] = []
            streaming = compressor is not None
            for key, line in conn.execute(stmt):
                keys.append(key)
                rendered.append(line)
                if line is None:
                    streaming = False
                elif streaming and compressor is not None:
                    compressor.add(part_line(line))
            if streaming and compressor is not None:
                return cls(keys, lines=None, compressed=compressor)
            # Rows the database did not render (see archive.sql_lines) are encoded in Python.
            unrendered = [key for key, line in zip(keys, rendered, strict=True) if line is None]
            python = {}
            if unrendered:
                table = table_of(selection.table.model)
                rows = fetch_rows(conn, select(table).where(selection.key.in_(unrendered)))
                python = {row[selection.table.key_column]: encode_row(row) for row in rows}
            encoded = [
                python[key] if line is None else part_line(line)
                for key, line in zip(keys, rendered, strict=True)
            ]
            return cls(keys, lines=encoded)
        return cls(list(conn.execute(stmt).scalars().all()))

    @classmethod
    def copied(
        cls, conn: Connection, selection: RuleSelection, batch: Any, compressor: MemberCompressor
    ) -> _Batch:
        """PostgreSQL: like :meth:`deleted`, the lines streamed into ``compressor`` by one
        ``COPY`` (see :mod:`.copy_lines`); ``keys`` holds the first and last key only."""
        table = table_of(selection.table.model)
        key = selection.key
        in_batch = key == any_(func.array(batch.scalar_subquery()))
        taken = delete(table).where(in_batch).returning(*table.c).cte("batch_rows")
        lines = line_expression(table, conn.dialect, alias="batch_rows")
        assert lines is not None, "called only for a table with a line expression"
        query = select(lines).select_from(taken).order_by(taken.c[selection.table.key_column])
        sink = CopiedLines(compressor, selection.table.key_column)
        copy_lines(conn, CopyOut(query), sink)
        if not sink.rows:
            return cls([])
        return cls(list(sink.key_range()), compressed=compressor, count=sink.rows)

    @classmethod
    def deleted(cls, conn: Connection, selection: RuleSelection, lines: Any, batch: Any) -> _Batch:
        """PostgreSQL: delete the rows that ``batch`` (a SELECT of keys ``FOR UPDATE SKIP
        LOCKED``) selects and locks, in one statement; the batch is the rows deleted, with
        their lines, in key order."""
        table = table_of(selection.table.model)
        key = selection.key
        in_batch = key == any_(func.array(batch.scalar_subquery()))
        stmt = delete(table).where(in_batch).returning(key, lines)
        fetched = sorted(conn.execute(stmt).all(), key=lambda row: row[0])
        return cls([key for key, _ in fetched], lines=[part_line(line) for _, line in fetched])


class Executor:
    """Runs the selections of one plan, writing one archive for the whole run.

    Args:
        engine: The database.
        writer: The run's archive, or ``None`` when no rule archives (then every rule must have
            ``archive = false``).
        now: The moment of the plan; scrub markers and expiry times carry it.
        metrics: Counted into, when given.
        progress: Called with (rule name, rows handled) after each batch.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        writer: ArchiveWriter | None,
        now: datetime,
        metrics: Metrics | None = None,
        progress: Progress | None = None,
        expire_reason: str = "expired by retention",
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.now = now
        self.metrics = metrics
        self.progress = progress
        self.expire_reason = expire_reason
        #: What the rules did so far: complete after ``run``, partial when it raised.
        self.outcomes: list[RuleOutcome] = []
        # BEGIN IMMEDIATE on SQLite: the batch's select and its delete see the same rows.
        self._bind = engine.execution_options(sqlite_begin="IMMEDIATE")

    def run(self, plan: Plan, *, expected: Mapping[str, int] | None = None) -> list[RuleOutcome]:
        """Apply every rule in order; returns what each did.

        With ``expected`` (each rule's previewed count), a rule that would go more than 10 %
        past its count stops the run with :class:`PlanExceeded`; batches already committed stay
        committed (and archived).
        """
        outcomes = self.outcomes = []
        with self._bind.connect() as conn, BetweenBatches(conn) as between:
            for selection in plan.selections:
                outcome = RuleOutcome(
                    name=selection.rule.name,
                    table=selection.table.name,
                    action=selection.rule.action,
                    archive=selection.rule.archive,
                    matched=(expected or {}).get(selection.rule.name, 0),
                )
                outcomes.append(outcome)
                limit = overrun_limit(outcome.matched) if expected is not None else None
                self._run_rule(conn, selection, outcome, between, limit)
        return outcomes

    def _run_rule(
        self,
        conn: Connection,
        selection: RuleSelection,
        outcome: RuleOutcome,
        between: BetweenBatches,
        limit: int | None,
    ) -> None:
        table = table_of(selection.table.model)
        key = selection.key
        action = selection.rule.action
        # Archived rows that are not scrubbed go to the archive as lines the database renders;
        # whole rows are read only when they are scrubbed from what was read, or when the table
        # has no line expression. An unarchived delete or an expiry needs just the keys.
        archived_as_read = selection.rule.archive and action != "scrub"
        lines = line_expression(table, conn.dialect) if archived_as_read else None
        # PostgreSQL: an archived delete with no side effects to capture is one statement per
        # batch, DELETE … WHERE key = ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED)) RETURNING the
        # rows' lines: what is archived is exactly what was deleted. (SQLite holds the write
        # lock for the batch anyway, and its DELETE … RETURNING is slower than SELECT, DELETE.)
        side_effects = table.name in SIDE_EFFECTS
        postgresql = conn.dialect.name == "postgresql"
        returning = lines if postgresql and action == "delete" and not side_effects else None
        read_lines = lines is not None and returning is None
        # ...streamed with COPY when the key is an integer (the first and last lines say the
        # part's key range): see copy_lines.
        copying = returning is not None and isinstance(key.type, Integer)
        if copying:
            enable_copy(self.engine)
        whole = _exact(selection) and lines is None
        columns = [table] if whole else [key, lines] if read_lines else [key]
        budget = selection.batch_time_budget.total_seconds()
        size = first_batch_size(selection.batch_size)
        if postgresql:
            self._drop_partitions(conn, selection, outcome, limit)
        last: Any = None
        while True:
            condition = selection.eligible if last is None else and_(selection.eligible, key > last)
            stmt = select(*columns).select_from(table).where(condition).order_by(key).limit(size)
            if _exact(selection):
                # PostgreSQL: the rows read are the rows changed (SQLite holds the write lock).
                stmt = stmt.with_for_update(skip_locked=True)
            started = time.perf_counter()
            with conn.begin():
                if postgresql:
                    # The commit need not wait for the WAL flush: a batch lost in a crash leaves
                    # its rows in the database (and perhaps in its durable archive part too,
                    # which restore tolerates). The archive part is still made durable first.
                    conn.execute(text("SET LOCAL synchronous_commit = off"))
                extras: list[SideEffect] = []
                if returning is not None:
                    # Deleted before it is archived, but not committed before: a failure to
                    # archive (or a crash) rolls the delete back.
                    if copying and self.writer is not None:
                        batch = _Batch.copied(conn, selection, stmt, self.writer.compressor())
                    else:
                        batch = _Batch.deleted(conn, selection, returning, stmt)
                    keys = batch.keys
                    if not keys:
                        return
                    affected = batch.size
                    self._check_limit(selection, outcome, affected, limit)
                    self._archive(selection, table, batch, extras)
                else:
                    compressor = (
                        self.writer.compressor() if read_lines and self.writer is not None else None
                    )
                    batch = _Batch.read(
                        conn, stmt, selection, whole=whole, lines=read_lines, compressor=compressor
                    )
                    keys = batch.keys
                    if not keys:
                        return
                    self._check_limit(selection, outcome, len(keys), limit)
                    if action == "delete":
                        extras = capture_side_effects(conn, table.name, keys)
                    if batch.compressed is not None:
                        # The lines are being compressed: the batch is applied meanwhile, and
                        # its part is made durable after, still before the commit.
                        affected = self._apply(conn, selection, table, batch.rows, keys)
                        self._archive(selection, table, batch, extras)
                    else:
                        if selection.rule.archive:
                            self._archive(selection, table, batch, extras)
                        affected = self._apply(conn, selection, table, batch.rows, keys)
            last = keys[-1]
            elapsed = time.perf_counter() - started
            between.batch_done(elapsed)
            size = next_batch_size(
                size, batch.size, elapsed, budget=budget, batch_size=selection.batch_size
            )
            outcome.batches += 1
            outcome.affected += affected
            for extra in extras:
                bucket = (
                    outcome.cascaded if extra.action is PartAction.CASCADE else outcome.unlinked
                )
                bucket[extra.table.name] = bucket.get(extra.table.name, 0) + len(extra.rows)
            self._count(selection, affected)

    def _drop_partitions(
        self, conn: Connection, selection: RuleSelection, outcome: RuleOutcome, limit: int | None
    ) -> None:
        """PostgreSQL: the partitions of runs the rule covers whole go first, whole."""

        def dropped(path: PartitionPath) -> None:
            outcome.partitions.append(path.partition.name)
            outcome.batches += 1
            outcome.affected += path.rows
            self._count(selection, path.rows, progress=False)

        def progress(rows: int) -> None:
            if self.progress is not None:
                self.progress(selection.rule.name, rows)

        drop_covered(
            conn,
            selection,
            self.writer,
            admit=lambda rows: self._check_limit(selection, outcome, rows, limit),
            done=dropped,
            progress=progress,
        )

    @staticmethod
    def _check_limit(
        selection: RuleSelection, outcome: RuleOutcome, rows: int, limit: int | None
    ) -> None:
        if limit is not None and outcome.affected + rows > limit:
            raise PlanExceeded(
                f"Rule {selection.rule.name!r} would affect more than {limit} rows; its "
                f"plan counted {outcome.matched}. The run stopped after "
                f"{outcome.affected}; preview again."
            )

    def _archive(
        self, selection: RuleSelection, table: Table, batch: _Batch, extras: list[SideEffect]
    ) -> None:
        if self.writer is None:
            raise RuntimeError(f"rule {selection.rule.name!r} archives but no archive is open")
        rule = selection.rule.name
        # Side effects first: a part is durable before the batch's own rows are.
        for extra in extras:
            self.writer.write_part(
                extra.table.name,
                extra.rows,
                key_column=extra.key_column,
                rule=rule,
                action=extra.action,
            )
        where = {"key_column": selection.table.key_column, "rule": rule}
        if batch.compressed is not None:
            self.writer.write_compressed(
                table.name,
                batch.compressed,
                key_min=batch.keys[0],
                key_max=batch.keys[-1],
                rule=rule,
                action=selection.rule.action,
            )
        elif batch.lines is not None:
            self.writer.write_lines(
                table.name, batch.lines, batch.keys, action=selection.rule.action, **where
            )
        else:
            self.writer.write_part(table.name, batch.rows, action=selection.rule.action, **where)

    def _apply(
        self,
        conn: Connection,
        selection: RuleSelection,
        table: Table,
        rows: list[dict[str, Any]],
        keys: list[Any],
    ) -> int:
        key = selection.key
        action = selection.rule.action
        if action == "delete":
            apply_side_effects(conn, table.name, keys)
            return int(conn.execute(delete(table).where(_batch(conn, selection, keys))).rowcount)
        # Scrubbed and expired rows carry the plan's moment in ``updated_at``: later rules of
        # the table recognise them by it (see planner._touched).
        stamp = {"updated_at": self.now} if "updated_at" in table.c else {}
        if action == "expire":
            values = selection.table.expire_values(self.now, self.expire_reason) | stamp
            batch = _batch(conn, selection, keys)
            return int(conn.execute(update(table).where(batch).values(**values)).rowcount)
        fields = selection.table.scrub_fields
        params = []
        for row in rows:
            changes = selection.table.scrub_values(row, self.now)
            if changes:
                params.append(
                    {
                        "_key": row[selection.table.key_column],
                        **{f"_{f}": changes.get(f, row[f]) for f in fields},
                    }
                )
        if not params:
            return 0
        stmt = (
            update(table)
            .where(key == bindparam("_key"))
            .values({f: bindparam(f"_{f}", type_=table.c[f].type) for f in fields} | stamp)
        )
        conn.execute(stmt, params)
        return len(params)

    def _count(self, selection: RuleSelection, affected: int, *, progress: bool = True) -> None:
        if self.metrics is not None and affected:
            labels = (selection.rule.name, selection.table.name)
            if selection.rule.archive:
                self.metrics.retention_rows.labels(*labels, "archived").inc(affected)
            verb = {"delete": "deleted", "scrub": "scrubbed", "expire": "expired"}
            self.metrics.retention_rows.labels(*labels, verb[selection.rule.action]).inc(affected)
        if progress and self.progress is not None:
            self.progress(selection.rule.name, affected)
