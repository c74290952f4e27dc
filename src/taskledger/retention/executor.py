"""The executor: applies a plan batch by batch, archiving every row before it changes.

One short transaction per batch: select the next batch in key order (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``, which takes the write lock up front), capture what the
database's cascades would take with it, write all of it to a durable archive part, apply the
action, commit. A crash at any point leaves every row in the database, in the archive, or both;
restore is idempotent, so "both" is harmless. The executor reports through a callback and a
returned report; it never prints.
"""

from __future__ import annotations

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
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from taskledger.metrics import Metrics
from taskledger.retention.archive import ArchiveWriter
from taskledger.retention.planner import Plan, RuleSelection
from taskledger.store.models import (
    Acknowledgement,
    AgentConnection,
    Instruction,
    Run,
    TaskDependency,
)

Progress = Callable[[str, int], None]


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
    return [dict(row) for row in conn.execute(stmt).mappings()]


def _unlink_rows(
    conn: Connection, model: Any, column: str, keys: Sequence[Any]
) -> list[dict[str, Any]]:
    t = _table(model)
    return _rows(conn, select(t.c.id, t.c[column]).where(t.c[column].in_(keys)).order_by(t.c.id))


def _batch(conn: Connection, selection: RuleSelection, keys: list[Any]) -> ColumnElement[bool]:
    """The rows of a batch, for its DELETE or UPDATE, without one bound parameter per key.

    SQLite: the batch was selected under the write lock (``BEGIN IMMEDIATE``), so the eligible
    rows from its first key to its last are exactly the batch, an index range. PostgreSQL: ``SKIP
    LOCKED`` may have left gaps in that range, so the keys themselves, as one array.
    """
    key = selection.key
    if conn.dialect.name == "sqlite":
        return and_(selection.eligible, key >= keys[0], key <= keys[-1])
    return key == any_(bindparam("batch_keys", keys, type_=ARRAY(key.type)))


def capture_side_effects(conn: Connection, table: str, keys: Sequence[Any]) -> list[_Extra]:
    """Rows that deleting ``keys`` of ``table`` would take with it (ON DELETE CASCADE) or change
    (ON DELETE SET NULL), so that they are archived too and restore can put them back."""
    extras: list[_Extra] = []
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
    return [extra for extra in extras if extra.rows]


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
        # BEGIN IMMEDIATE on SQLite: the batch's select and its delete see the same rows.
        self._bind = engine.execution_options(sqlite_begin="IMMEDIATE")

    def run(self, plan: Plan, *, expected: Mapping[str, int] | None = None) -> list[RuleOutcome]:
        """Apply every rule in order; returns what each did."""
        outcomes = []
        for selection in plan.selections:
            outcome = RuleOutcome(
                name=selection.rule.name,
                table=selection.table.name,
                action=selection.rule.action,
                archived=selection.rule.archive,
                matched=(expected or {}).get(selection.rule.name, 0),
            )
            self._run_rule(selection, outcome)
            outcomes.append(outcome)
        return outcomes

    def _run_rule(self, selection: RuleSelection, outcome: RuleOutcome) -> None:
        table = _table(selection.table.model)
        key = selection.key
        last: Any = None
        while True:
            condition = selection.eligible if last is None else and_(selection.eligible, key > last)
            # Whole rows only when they are archived or scrubbed; an unarchived delete or an
            # expiry needs just the keys.
            whole = selection.rule.archive or selection.rule.action == "scrub"
            stmt = (
                (select(table) if whole else select(key))
                .where(condition)
                .order_by(key)
                .limit(selection.batch_size)
                .with_for_update(skip_locked=True)
            )
            with self._bind.begin() as conn:
                if whole:
                    rows = _rows(conn, stmt)
                    keys = [row[selection.table.key_column] for row in rows]
                else:
                    rows, keys = [], list(conn.execute(stmt).scalars())
                if not keys:
                    return
                extras = (
                    capture_side_effects(conn, table.name, keys)
                    if selection.rule.action == "delete"
                    else []
                )
                if selection.rule.archive:
                    self._archive(selection, table, rows, extras)
                affected = self._apply(conn, selection, table, rows, keys)
            last = keys[-1]
            outcome.batches += 1
            outcome.affected += affected
            for extra in extras:
                bucket = outcome.cascaded if extra.action == "cascade" else outcome.unlinked
                bucket[extra.table.name] = bucket.get(extra.table.name, 0) + len(extra.rows)
            self._count(selection, affected)

    def _archive(
        self,
        selection: RuleSelection,
        table: Table,
        rows: list[dict[str, Any]],
        extras: list[_Extra],
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
        self.writer.write_part(
            table.name,
            rows,
            key_column=selection.table.key_column,
            rule=rule,
            action=selection.rule.action,
        )

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
            return int(conn.execute(delete(table).where(_batch(conn, selection, keys))).rowcount)
        if action == "expire":
            values = selection.table.expire_values(self.now, self.expire_reason)
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
            .values({f: bindparam(f"_{f}", type_=table.c[f].type) for f in fields})
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
