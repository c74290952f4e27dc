"""The planner: from a policy and a moment, the exact selection of every rule.

``build_plan`` is pure: it turns each rule into SQL conditions (age, status, projects,
acknowledgements, what still needs scrubbing), minus held rows, minus tasks that unfinished work
depends on, minus rows an earlier rule of the same table already takes (the first matching rule
wins, also after it has scrubbed or expired them). :mod:`taskledger.retention.plan.preview` runs
those conditions as counts and changes nothing; the executor runs the very same conditions batch
by batch, so what an execution affects is a preview's ``matched``, give or take the rows other
writers change while it runs (it stops more than 10 % over).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    cast,
    exists,
    false,
    func,
    not_,
    or_,
    type_coerce,
)

from taskledger.enums import TERMINAL_STATUSES
from taskledger.retention.plan.holds import HeldSet
from taskledger.retention.policy.rules import DEFAULT_BATCH_TIME_BUDGET, Policy, Rule
from taskledger.retention.policy.tables import RetainedTable, get_table
from taskledger.store.models import Acknowledgement, Task, TaskDependency
from taskledger.store.types import as_utc


@dataclass(frozen=True)
class RuleSelection:
    """One rule, made concrete: its cutoff and the conditions that pick its rows."""

    rule: Rule
    table: RetainedTable
    cutoff: datetime
    batch_size: int  # the largest batch; batches are sized by batch_time_budget below it
    candidates: ColumnElement[bool]  # what the rule asks for, before exclusions
    eligible: ColumnElement[bool]  # what it will actually take
    held: ColumnElement[bool]  # candidates a hold protects
    protected: ColumnElement[bool] | None  # tasks unfinished work depends on
    #: How long one batch's write transaction should take.
    batch_time_budget: timedelta = DEFAULT_BATCH_TIME_BUDGET
    #: PostgreSQL: partitions of runs the selection covers whole may be dropped whole.
    whole_partitions: bool = True
    #: What ``eligible`` asks of a row already older than the cutoff: ``eligible`` without its
    #: age condition (``true()`` when it asks nothing more; ``None`` when not known). A
    #: partition wholly older than the cutoff is counted with it.
    beyond_age: ColumnElement[bool] | None = None

    def column(self, name: str) -> Any:
        return self.table.model.__table__.c[name]

    @property
    def key(self) -> Any:
        return self.column(self.table.key_column)

    @property
    def age(self) -> ColumnElement[Any]:
        """The expression a row's age is measured on (with the table's fallback, if any)."""
        return age_expression(self.rule, self.table)


@dataclass(frozen=True)
class Plan:
    """Every rule of a policy, made concrete at one moment."""

    policy: Policy
    now: datetime
    selections: tuple[RuleSelection, ...]


def age_expression(rule: Rule, table: RetainedTable) -> ColumnElement[Any]:
    """What ``rule`` measures a row's age on: its age column, or the table's fallback for that
    column when it is empty."""
    c = table.model.__table__.c
    column = c[rule.age_column]
    fallback = table.age_fallbacks.get(rule.age_column)
    return func.coalesce(column, c[fallback]) if fallback else column


def _scrub_needed(table: RetainedTable, dialect: str) -> ColumnElement[bool]:
    """Rows with at least one payload field that is set and not yet a scrub marker."""
    c = table.model.__table__.c
    needed = []
    for name in table.scrub_fields:
        text: ColumnElement[Any]
        if table.is_text_field(name):
            text, prefix = type_coerce(c[name], String), '{"archived":true,%'
        else:
            text = type_coerce(c[name], String) if dialect == "sqlite" else cast(c[name], Text)
            prefix = '{"archived": true,%'
        needed.append(and_(c[name].is_not(None), not_(text.like(prefix))))
    return or_(*needed) if needed else false()


def status_filter(rule: Rule, table: RetainedTable) -> tuple[str, ...]:
    """The statuses ``rule`` selects on ``table`` (empty: any status). An ``expire`` rule only
    takes rows it can still expire."""
    statuses = rule.statuses
    if rule.action == "expire" and table.expire is not None:
        allowed = table.expire.from_statuses
        statuses = tuple(s for s in statuses if s in allowed) if statuses else allowed
    return tuple(statuses or ())


def _conditions(
    rule: Rule, table: RetainedTable, cutoff: datetime, project_ids: Mapping[str, Any], dialect: str
) -> list[ColumnElement[bool]]:
    """What ``rule`` asks of a row, the age condition first."""
    c = table.model.__table__.c
    conditions: list[ColumnElement[bool]] = [age_expression(rule, table) < cutoff]
    if statuses := status_filter(rule, table):
        conditions.append(c["status"].in_(statuses))
    if rule.projects:
        conditions.append(c[table.project_column].in_([project_ids[p] for p in rule.projects]))
    if rule.has_acknowledgements is not None:
        acked = exists().where(Acknowledgement.instruction_id == c[table.key_column])
        conditions.append(acked if rule.has_acknowledgements else not_(acked))
    if rule.action == "scrub":
        conditions.append(_scrub_needed(table, dialect))
    return conditions


def _touched(rule: Rule, table: RetainedTable, now: datetime, dialect: str) -> ColumnElement[bool]:
    """Rows this rule's own action changed in an execution at ``now``.

    Scrubbing and expiring change the very columns a rule selects on (the payload stops needing a
    scrub, the status stops being expirable), so after its batches those rows no longer match the
    rule. They are still its rows: the executor stamps ``updated_at`` with the plan's moment, and
    later rules of the table exclude what carries that stamp and the action's result, so no row is
    taken twice in one execution.
    """
    c = table.model.__table__.c
    if rule.action == "delete" or "updated_at" not in c:
        return false()
    if rule.action == "scrub":
        return and_(c["updated_at"] == now, not_(_scrub_needed(table, dialect)))
    assert table.expire is not None
    return and_(c["updated_at"] == now, c["status"] == table.expire.status)


def unfinished_dependents() -> ColumnElement[bool]:
    """Tasks that a task not yet completed, failed or cancelled depends on."""
    dependent = Task.__table__.alias("dependent")
    return exists().where(
        TaskDependency.depends_on_id == Task.__table__.c.id,
        TaskDependency.task_id == dependent.c.id,
        dependent.c.status.not_in(sorted(TERMINAL_STATUSES)),
    )


def build_plan(
    policy: Policy,
    now: datetime,
    *,
    held: HeldSet,
    project_ids: Mapping[str, Any],
    dialect: str,
) -> Plan:
    """The concrete selection of every rule of ``policy`` at ``now`` (pure: no queries)."""
    now = as_utc(now)
    earlier: dict[str, list[ColumnElement[bool]]] = {}
    selections = []
    for rule in policy.rules:
        table = get_table(rule.table)
        cutoff = rule.cutoff(now)
        conditions = _conditions(rule, table, cutoff, project_ids, dialect)
        base = and_(*conditions)
        held_condition = held.held(table.name) if held else false()
        protected = unfinished_dependents() if table.name == "tasks" else None
        exclusions = [held_condition, *earlier.get(table.name, [])]
        if rule.action == "delete" and held:
            exclusions.append(held.held_children(table.name))
        if protected is not None:
            exclusions.append(protected)
        kept = not_(or_(*exclusions))  # true() when nothing is excluded
        eligible = and_(base, kept)
        beyond_age = and_(*conditions[1:], kept) if len(conditions) > 1 else kept
        selections.append(
            RuleSelection(
                rule=rule,
                table=table,
                cutoff=cutoff,
                batch_size=policy.batch_size_for(rule),
                batch_time_budget=policy.batch_time_budget,
                candidates=base,
                eligible=eligible,
                beyond_age=beyond_age,
                held=and_(base, held_condition),
                protected=and_(base, not_(held_condition), protected)
                if protected is not None
                else None,
            )
        )
        earlier.setdefault(table.name, []).append(or_(base, _touched(rule, table, now, dialect)))
    return Plan(policy=policy, now=now, selections=tuple(selections))
