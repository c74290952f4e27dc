"""The executor: applies a plan batch by batch, archiving every row before it changes.

One short transaction per batch: select the next batch in key order (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``, which takes the write lock up front), capture what the
database's cascades would take with it, write all of it to a durable archive part, apply the
action, commit. A crash at any point leaves every row in the database, in the archive, or both;
restore is idempotent, so "both" is harmless. The executor reports through a callback and a
returned report; it never prints.

Archived rows are rendered as archive lines by the database (:mod:`.archive_sql`). On
PostgreSQL an archived delete that takes nothing else with it is a single statement per batch:
``DELETE … WHERE key = ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED)) RETURNING`` the lines; the
part is written before the commit, so a failure to write it rolls the delete back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
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

from taskledger.enums import AssigneeType
from taskledger.errors import SafeguardRefused
from taskledger.metrics import Metrics
from taskledger.retention.archive.format import encode_row
from taskledger.retention.archive.sql_lines import line_expression, part_line
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.plan.planner import Plan, RuleSelection
from taskledger.store.models import (
    Acknowledgement,
    AgentConnection,
    AgentSession,
    ApiKey,
    Instruction,
    Run,
    Task,
    TaskDependency,
)

Progress = Callable[[str, int], None]

#: A rule may affect this share more rows than its plan counted before the run stops.
OVERRUN_TOLERANCE = 0.10


class PlanExceeded(SafeguardRefused):
    """A rule reached more rows than its plan allows (rows came of age behind the plan's back)."""


def overrun_limit(matched: int) -> int:
    """The most rows a rule planned at ``matched`` may affect: 10 % more, rounded down."""
    return matched + int(matched * OVERRUN_TOLERANCE)


#: SQLite: while other connections are committing, the pause after each batch, as a share of the
#: batch's time, so that they get the write lock in between (it ends as soon as one has committed).
SQLITE_YIELD = 0.25
#: SQLite: when no other connection has committed for this long (seconds), though one did
#: within :data:`SQLITE_WRITERS_GONE`, a writer may be waiting at SQLite's slowest poll rate...
SQLITE_STARVED_AFTER = 0.1
SQLITE_WRITERS_GONE = 5.0
#: ...and the pause lasts up to this long: more than the 100 ms between its polls.
SQLITE_LONG_PAUSE = 0.12
#: SQLite: a long pause this often (seconds) even when no writer has been seen, for a writer
#: that began waiting before it could commit once (see :func:`pause_for`).
SQLITE_WINDOW_EVERY = 0.25
#: SQLite: how long the run waits for its checkpoint thread to begin, at most (seconds).
SQLITE_CHECKPOINT_START_WAIT = 0.05
#: SQLite: how often a pause looks for another connection's commit.
SQLITE_POLL = 0.001


@dataclass
class RuleOutcome:
    """What one rule did."""

    name: str
    table: str
    action: str
    archived: bool
    matched: int = 0
    affected: int = 0
    batches: int = 0
    cascaded: dict[str, int] = field(default_factory=dict)
    unlinked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "action": self.action,
            "archive": self.archived,
            "matched": self.matched,
            "affected": self.affected,
            "batches": self.batches,
            "cascaded": self.cascaded,
            "unlinked": self.unlinked,
        }


@dataclass
class _Extra:
    table: Table
    rows: list[dict[str, Any]]
    action: str  # "cascade" or "unlink"
    key_column: str


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _rows(conn: Connection, stmt: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(stmt).mappings().all()]


def _unlink_rows(
    conn: Connection, model: Any, column: str, keys: Sequence[Any]
) -> list[dict[str, Any]]:
    t = _table(model)
    return _rows(conn, select(t.c.id, t.c[column]).where(t.c[column].in_(keys)).order_by(t.c.id))


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
    if conn.dialect.name == "sqlite" or not _exact(selection):
        return and_(selection.eligible, key >= keys[0], key <= keys[-1])
    in_batch: ColumnElement[bool] = key == any_(bindparam("keys", keys, type_=ARRAY(key.type)))
    return in_batch


#: Tables whose deletes take or change rows elsewhere (see :func:`capture_side_effects`).
SIDE_EFFECTS = frozenset({"tasks", "agent_sessions", "instructions", "agents"})


def capture_side_effects(conn: Connection, table: str, keys: Sequence[Any]) -> list[_Extra]:
    """Rows that deleting ``keys`` of ``table`` would take with it (ON DELETE CASCADE) or change
    (ON DELETE SET NULL), so that they are archived too and restore can put them back."""
    extras: list[_Extra] = []
    if table not in SIDE_EFFECTS:
        return extras
    if table == "tasks":
        deps = _table(TaskDependency)
        edges = _rows(
            conn,
            select(deps)
            .where(deps.c.task_id.in_(keys) | deps.c.depends_on_id.in_(keys))
            .order_by(deps.c.task_id, deps.c.depends_on_id),
        )
        extras.append(_Extra(deps, edges, "cascade", "task_id"))
        extras.append(_Extra(_table(Run), _unlink_rows(conn, Run, "task_id", keys), "unlink", "id"))
    elif table == "agent_sessions":
        for model in (AgentConnection, Instruction):
            rows = _unlink_rows(conn, model, "session_id", keys)
            extras.append(_Extra(_table(model), rows, "unlink", "id"))
    elif table == "instructions":
        acks = _table(Acknowledgement)
        rows = _rows(conn, select(acks).where(acks.c.instruction_id.in_(keys)).order_by(acks.c.id))
        extras.append(_Extra(acks, rows, "cascade", "id"))
    elif table == "agents":
        extras.extend(_agent_side_effects(conn, keys))
    return [extra for extra in extras if extra.rows]


def _agent_side_effects(conn: Connection, keys: Sequence[Any]) -> list[_Extra]:
    """An agent takes its keys, sessions and connections with it, and leaves its history (runs,
    instructions, acknowledgements, task assignments) unattributed."""
    extras = []
    for model in (ApiKey, AgentSession, AgentConnection):
        t = _table(model)
        rows = _rows(conn, select(t).where(t.c.agent_id.in_(keys)).order_by(t.c.id))
        extras.append(_Extra(t, rows, "cascade", "id"))
    sessions = select(AgentSession.id).where(AgentSession.agent_id.in_(keys))
    others = _table(AgentConnection)
    extras.append(
        _Extra(
            others,
            _rows(
                conn,
                select(others.c.id, others.c.session_id)
                .where(others.c.session_id.in_(sessions), others.c.agent_id.not_in(keys))
                .order_by(others.c.id),
            ),
            "unlink",
            "id",
        )
    )
    instructions = _table(Instruction)
    extras.append(
        _Extra(
            instructions,
            _rows(
                conn,
                select(instructions.c.id, instructions.c.agent_id, instructions.c.session_id)
                .where(instructions.c.agent_id.in_(keys) | instructions.c.session_id.in_(sessions))
                .order_by(instructions.c.id),
            ),
            "unlink",
            "id",
        )
    )
    for attributed in (Run, Acknowledgement):
        rows = _unlink_rows(conn, attributed, "agent_id", keys)
        extras.append(_Extra(_table(attributed), rows, "unlink", "id"))
    tasks = _table(Task)
    assigned = _rows(
        conn,
        select(tasks.c.id, tasks.c.assigned_to, tasks.c.assigned_to_type)
        .where(*_assigned_to_agents(keys))
        .order_by(tasks.c.id),
    )
    extras.append(_Extra(tasks, assigned, "unlink", "id"))
    return extras


def _assigned_to_agents(keys: Sequence[Any]) -> tuple[Any, ...]:
    return (Task.assigned_to.in_(keys), Task.assigned_to_type == AssigneeType.AGENT.value)


def apply_side_effects(conn: Connection, table: str, keys: Sequence[Any]) -> None:
    """What deleting ``keys`` of ``table`` changes that no foreign key does: tasks name their
    assignee without one, so an agent's tasks are unassigned here."""
    if table == "agents":
        conn.execute(
            update(Task)
            .where(*_assigned_to_agents(keys))
            # As a foreign key's SET NULL would: the task's own updated_at stays as it was.
            .values(assigned_to=None, assigned_to_type=None, updated_at=Task.updated_at)
        )


@dataclass
class _Batch:
    """The rows of one batch as read: their keys, and whole rows or archive lines when needed."""

    keys: list[Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[bytes] | None = None

    @classmethod
    def read(
        cls, conn: Connection, stmt: Any, selection: RuleSelection, *, whole: bool, lines: bool
    ) -> _Batch:
        if whole:
            rows = _rows(conn, stmt)
            return cls([row[selection.table.key_column] for row in rows], rows)
        if lines:
            fetched = conn.execute(stmt).all()
            # Rows the database did not render (see archive_sql) are encoded in Python.
            unrendered = [key for key, line in fetched if line is None]
            python = {}
            if unrendered:
                table = _table(selection.table.model)
                rows = _rows(conn, select(table).where(selection.key.in_(unrendered)))
                python = {row[selection.table.key_column]: encode_row(row) for row in rows}
            encoded = [python[key] if line is None else part_line(line) for key, line in fetched]
            return cls([key for key, _ in fetched], lines=encoded)
        return cls(list(conn.execute(stmt).scalars().all()))

    @classmethod
    def deleted(cls, conn: Connection, selection: RuleSelection, lines: Any, batch: Any) -> _Batch:
        """PostgreSQL: delete the rows that ``batch`` (a SELECT of keys ``FOR UPDATE SKIP
        LOCKED``) selects and locks, in one statement; the batch is the rows deleted, with
        their lines, in key order."""
        table = _table(selection.table.model)
        key = selection.key
        in_batch = key == any_(func.array(batch.scalar_subquery()))
        stmt = delete(table).where(in_batch).returning(key, lines)
        fetched = sorted(conn.execute(stmt).all(), key=lambda row: row[0])
        return cls([key for key, _ in fetched], lines=[part_line(line) for _, line in fetched])


class _BetweenBatches:
    """SQLite: what happens between two batches, outside any transaction.

    **Other writers get their turn.** SQLite has no queue for its write lock: a writer waiting
    on it polls, at growing intervals that reach 100 ms once it has waited a while, so batches
    run back to back would starve it. Every pause ends early once another connection has
    committed (``PRAGMA data_version`` changes): that writer got its turn. See :func:`pause_for`
    for how long a pause may last.

    **The WAL is checkpointed by a thread** of its own, on its own connection, after every
    batch: each batch rewrites the index pages its rows are spread over (``run_id`` is random,
    so nearly every page of that index), and left in the WAL those pages would be copied back by
    whichever connection's commit next runs SQLite's automatic checkpoint: another writer's,
    which would wait for it. The checkpoint is PASSIVE (it blocks no writer) and runs while the
    next batch does. The run's own connection does not checkpoint automatically; its setting is
    put back at the end.
    """

    def __init__(self, conn: Connection) -> None:
        # PRAGMAs go through the DBAPI connection: SQLAlchemy would begin a transaction first.
        self.raw: Any = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        self.previous = 0
        self.version = 0
        self.other_commit_at: float | None = None
        self.window_at = time.monotonic()
        self.checkpointer: _Checkpointer | None = None

    def __enter__(self) -> _BetweenBatches:
        if self.raw is not None:
            self.previous = int(self.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            self.raw.execute("PRAGMA wal_autocheckpoint = 0")
            self.version = self._data_version()
            path = self.raw.execute("PRAGMA database_list").fetchone()[2]
            if path:  # not for an in-memory database
                self.checkpointer = _Checkpointer(path)
        return self

    def _data_version(self) -> int:
        return int(self.raw.execute("PRAGMA data_version").fetchone()[0])

    def _others_committed(self) -> bool:
        version = self._data_version()
        if version == self.version:
            return False
        self.version = version
        self.other_commit_at = time.monotonic()
        return True

    def batch_done(self, rows: int, seconds: float) -> None:
        if self.raw is None:
            return
        self._others_committed()
        pause = pause_for(
            time.monotonic(),
            seconds,
            other_commit_at=self.other_commit_at,
            window_at=self.window_at,
        )
        if self.checkpointer is not None:
            # Before a pause, the checkpoint must have begun: see the class's docstring.
            self.checkpointer.wake(wait=pause > 0)
        deadline = time.monotonic() + pause
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, SQLITE_POLL))
            if self._others_committed():
                break
        if pause >= SQLITE_LONG_PAUSE:
            self.window_at = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        if self.raw is not None:
            if self.checkpointer is not None:
                self.checkpointer.close()
            self.raw.execute(f"PRAGMA wal_autocheckpoint = {self.previous}")
            self.raw.execute("PRAGMA wal_checkpoint(PASSIVE)")


def pause_for(
    now: float, batch_seconds: float, *, other_commit_at: float | None, window_at: float
) -> float:
    """SQLite: how long the pause after a batch may last (seconds; it ends early once another
    connection has committed). ``other_commit_at`` is when another connection was last seen to
    commit (``None``: never during this run), ``window_at`` when the last long pause ended (or
    the run began).

    - Another connection committed within :data:`SQLITE_STARVED_AFTER`: writers are active, and
      :data:`SQLITE_YIELD` of the batch's time lets the next one in.
    - One did within :data:`SQLITE_WRITERS_GONE`, but not since: it may be waiting at SQLite's
      slowest poll rate, every 100 ms, so the pause is :data:`SQLITE_LONG_PAUSE`, long enough for
      any poll to land in it.
    - No writer seen (or none within :data:`SQLITE_WRITERS_GONE`): no pause, but a long one
      whenever the next batch, if as long as this one, would end :data:`SQLITE_WINDOW_EVERY`
      or more after the last long pause, for a writer that has been waiting since before it
      could commit once. Such a writer waits at most about that, the wait for the checkpoint
      to begin (:data:`SQLITE_CHECKPOINT_START_WAIT`) and its last poll interval (100 ms).
    """
    quiet = None if other_commit_at is None else now - other_commit_at
    if quiet is not None and quiet < SQLITE_STARVED_AFTER:
        return batch_seconds * SQLITE_YIELD
    if quiet is not None and quiet < SQLITE_WRITERS_GONE:
        return SQLITE_LONG_PAUSE
    if now + batch_seconds - window_at >= SQLITE_WINDOW_EVERY:
        return SQLITE_LONG_PAUSE
    return 0.0


class _Checkpointer:
    """A thread running a PASSIVE WAL checkpoint of one SQLite file each time it is woken.

    :meth:`wake` returns once the checkpoint has begun (or when one is still running): from then
    on it holds SQLite's checkpoint lock, so that a writer committing in the pause that follows
    finds the checkpoint taken care of, instead of running it inside its own commit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.woken = threading.Event()
        self.started = threading.Event()
        self.busy = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="taskledger-checkpoint", daemon=True)
        self.thread.start()

    def wake(self, *, wait: bool = True) -> None:
        if not self.thread.is_alive():
            return  # it could not open the database; the checkpoint at the end of the run remains
        if self.busy:
            self.woken.set()  # it runs again once the current one is done
            return
        self.started.clear()
        self.woken.set()
        if wait:
            self.started.wait(SQLITE_CHECKPOINT_START_WAIT)

    def _run(self) -> None:
        # Checkpoints never wait: a busy checkpoint is simply retried after the next batch.
        try:
            connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        except sqlite3.Error:
            return  # the run goes on; its checkpoint at the end remains
        try:
            while True:
                self.woken.wait()
                self.woken.clear()
                if self.stopping:
                    return
                self.busy = True
                self.started.set()
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.busy = False
        finally:
            connection.close()

    def close(self) -> None:
        self.stopping = True
        self.woken.set()
        self.thread.join()


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
        with self._bind.connect() as conn, _BetweenBatches(conn) as between:
            for selection in plan.selections:
                outcome = RuleOutcome(
                    name=selection.rule.name,
                    table=selection.table.name,
                    action=selection.rule.action,
                    archived=selection.rule.archive,
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
        between: _BetweenBatches,
        limit: int | None,
    ) -> None:
        table = _table(selection.table.model)
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
        whole = _exact(selection) and lines is None
        columns = [table] if whole else [key, lines] if read_lines else [key]
        last: Any = None
        while True:
            condition = selection.eligible if last is None else and_(selection.eligible, key > last)
            stmt = (
                select(*columns)
                .select_from(table)
                .where(condition)
                .order_by(key)
                .limit(selection.batch_size)
            )
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
                extras: list[_Extra] = []
                if returning is not None:
                    # Deleted before it is archived, but not committed before: a failure to
                    # archive (or a crash) rolls the delete back.
                    batch = _Batch.deleted(conn, selection, returning, stmt)
                    keys = batch.keys
                    if not keys:
                        return
                    affected = len(keys)
                    self._check_limit(selection, outcome, affected, limit)
                    self._archive(selection, table, batch, extras)
                else:
                    batch = _Batch.read(conn, stmt, selection, whole=whole, lines=read_lines)
                    keys = batch.keys
                    if not keys:
                        return
                    self._check_limit(selection, outcome, len(keys), limit)
                    if action == "delete":
                        extras = capture_side_effects(conn, table.name, keys)
                    if selection.rule.archive:
                        self._archive(selection, table, batch, extras)
                    affected = self._apply(conn, selection, table, batch.rows, keys)
            last = keys[-1]
            between.batch_done(len(keys), time.perf_counter() - started)
            outcome.batches += 1
            outcome.affected += affected
            for extra in extras:
                bucket = outcome.cascaded if extra.action == "cascade" else outcome.unlinked
                bucket[extra.table.name] = bucket.get(extra.table.name, 0) + len(extra.rows)
            self._count(selection, affected)

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
        self, selection: RuleSelection, table: Table, batch: _Batch, extras: list[_Extra]
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
        if batch.lines is not None:
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

    def _count(self, selection: RuleSelection, affected: int) -> None:
        if self.metrics is not None and affected:
            labels = (selection.rule.name, selection.table.name)
            if selection.rule.archive:
                self.metrics.retention_rows.labels(*labels, "archived").inc(affected)
            verb = {"delete": "deleted", "scrub": "scrubbed", "expire": "expired"}
            self.metrics.retention_rows.labels(*labels, verb[selection.rule.action]).inc(affected)
        if self.progress is not None:
            self.progress(selection.rule.name, affected)
