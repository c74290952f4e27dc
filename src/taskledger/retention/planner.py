"""The planner: from a policy and a moment, the exact selection of every rule.

``build_plan`` is pure: it turns each rule into SQL conditions (age, status, projects,
acknowledgements, what still needs scrubbing), minus held rows, minus tasks that unfinished work
depends on, minus rows an earlier rule of the same table already takes (the first matching rule
wins, also after it has scrubbed or expired them). ``preview`` runs those conditions as counts
and changes nothing; the executor runs the very same conditions batch by batch, so what an
execution affects is a preview's ``matched``, give or take the rows other writers change while it
runs (it stops more than 10 % over).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from taskledger.enums import TERMINAL_STATUSES
from taskledger.retention.archive_format import compress_rows
from taskledger.retention.holds import HeldSet
from taskledger.retention.policy import Policy, PolicyError, Rule
from taskledger.retention.tables import RetainedTable, get_table
from taskledger.services.projects import find_project
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.models import Acknowledgement, Task, TaskDependency
from taskledger.store.types import as_utc, as_utc_or_none

SAMPLE_IDS = 5
_SIZE_SAMPLE = 200


@dataclass(frozen=True)
class RuleSelection:
    """One rule, made concrete: its cutoff and the conditions that pick its rows."""

    rule: Rule
    table: RetainedTable
    cutoff: datetime
    batch_size: int
    candidates: ColumnElement[bool]  # what the rule asks for, before exclusions
    eligible: ColumnElement[bool]  # what it will actually take
    held: ColumnElement[bool]  # candidates a hold protects
    protected: ColumnElement[bool] | None  # tasks unfinished work depends on

    def column(self, name: str) -> Any:
        return self.table.model.__table__.c[name]

    @property
    def key(self) -> Any:
        return self.column(self.table.key_column)

    @property
    def age(self) -> ColumnElement[Any]:
        """The expression a row's age is measured on (with the table's fallback, if any)."""
        column = self.column(self.rule.age_column)
        fallback = self.table.age_fallbacks.get(self.rule.age_column)
        return func.coalesce(column, self.column(fallback)) if fallback else column


@dataclass(frozen=True)
class Plan:
    """Every rule of a policy, made concrete at one moment."""

    policy: Policy
    now: datetime
    selections: tuple[RuleSelection, ...]


@dataclass
class RulePreview:
    """What one rule would do."""

    name: str
    table: str
    action: str
    archive: bool
    cutoff: datetime
    matched: int = 0
    held: int = 0
    protected: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    sample_ids: list[Any] = field(default_factory=list)
    estimated_archive_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "action": self.action,
            "archive": self.archive,
            "cutoff": self.cutoff.isoformat(),
            "matched": self.matched,
            "held": self.held,
            "protected": self.protected,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "sample_ids": [str(i) if isinstance(i, uuid.UUID) else i for i in self.sample_ids],
            "estimated_archive_bytes": self.estimated_archive_bytes,
        }


@dataclass
class PlanPreview:
    """The preview of a whole plan, identified by ``plan_id``."""

    plan: Plan
    rules: list[RulePreview]

    @property
    def plan_id(self) -> str:
        """A hash of the policy, the moment (hence the cutoffs) and the counts."""
        basis = {
            "policy": self.plan.policy.policy_hash,
            "now": self.plan.now.isoformat(),
            "rules": [[r.name, r.cutoff.isoformat(), r.matched] for r in self.rules],
        }
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def total(self) -> int:
        return sum(r.matched for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "policy": self.plan.policy.name,
            "policy_hash": self.plan.policy.policy_hash,
            "now": self.plan.now.isoformat(),
            "rules": [r.to_dict() for r in self.rules],
        }


def resolve_projects(session: Session, policy: Policy) -> dict[str, uuid.UUID]:
    """Project names or ids named by rules, mapped to ids; unknown ones are a PolicyError."""
    wanted = {name for rule in policy.rules for name in rule.projects or ()}
    found: dict[str, uuid.UUID] = {}
    for ref in sorted(wanted):
        project = find_project(session=session, name_or_id=ref)
        if project is None:
            rules = [r.name for r in policy.rules if ref in (r.projects or ())]
            raise PolicyError([f"rule {rules[0]!r}: unknown project {ref!r}"])
        found[ref] = project.id
    return found


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


def _base(
    rule: Rule, table: RetainedTable, cutoff: datetime, project_ids: Mapping[str, Any], dialect: str
) -> ColumnElement[bool]:
    c = table.model.__table__.c
    column = c[rule.age_column]
    fallback = table.age_fallbacks.get(rule.age_column)
    age = func.coalesce(column, c[fallback]) if fallback else column
    conditions: list[ColumnElement[bool]] = [age < cutoff]
    statuses = rule.statuses
    if rule.action == "expire" and table.expire is not None:
        allowed = table.expire.from_statuses
        statuses = tuple(s for s in statuses if s in allowed) if statuses else allowed
    if statuses:
        conditions.append(c["status"].in_(statuses))
    if rule.projects:
        conditions.append(c[table.project_column].in_([project_ids[p] for p in rule.projects]))
    if rule.has_acknowledgements is not None:
        acked = exists().where(Acknowledgement.instruction_id == c[table.key_column])
        conditions.append(acked if rule.has_acknowledgements else not_(acked))
    if rule.action == "scrub":
        conditions.append(_scrub_needed(table, dialect))
    return and_(*conditions)


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
        base = _base(rule, table, cutoff, project_ids, dialect)
        held_condition = held.held(table.name) if held else false()
        protected = unfinished_dependents() if table.name == "tasks" else None
        exclusions = [held_condition, *earlier.get(table.name, [])]
        if rule.action == "delete" and held:
            exclusions.append(held.held_children(table.name))
        if protected is not None:
            exclusions.append(protected)
        eligible = and_(base, not_(or_(*exclusions)))
        selections.append(
            RuleSelection(
                rule=rule,
                table=table,
                cutoff=cutoff,
                batch_size=policy.batch_size_for(rule),
                candidates=base,
                eligible=eligible,
                held=and_(base, held_condition),
                protected=and_(base, not_(held_condition), protected)
                if protected is not None
                else None,
            )
        )
        earlier.setdefault(table.name, []).append(or_(base, _touched(rule, table, now, dialect)))
    return Plan(policy=policy, now=now, selections=tuple(selections))


def _count(session: Session, selection: RuleSelection, condition: ColumnElement[bool]) -> int:
    table = selection.table.model.__table__
    return int(session.scalar(select(func.count()).select_from(table).where(condition)) or 0)


def preview_rule(
    session: Session,
    selection: RuleSelection,
    *,
    details: bool = True,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> RulePreview:
    """Count, date, sample and size one rule's selection (only count it without ``details``);
    the size is what its archive parts would take at ``gzip_level``."""
    rule, table = selection.rule, selection.table.model.__table__
    if not details:
        matched = session.scalar(select(func.count()).select_from(table).where(selection.eligible))
        return RulePreview(
            name=rule.name,
            table=rule.table,
            action=rule.action,
            archive=rule.archive,
            cutoff=selection.cutoff,
            matched=int(matched or 0),
        )
    result = RulePreview(
        name=rule.name,
        table=rule.table,
        action=rule.action,
        archive=rule.archive,
        cutoff=selection.cutoff,
    )
    matched, oldest, newest = session.execute(
        select(func.count(), func.min(selection.age), func.max(selection.age))
        .select_from(table)
        .where(selection.eligible)
    ).one()
    result.matched = int(matched or 0)
    result.oldest, result.newest = as_utc_or_none(oldest), as_utc_or_none(newest)
    result.held = _count(session, selection, selection.held) if selection.held is not None else 0
    if selection.protected is not None:
        result.protected = _count(session, selection, selection.protected)
    if result.matched:
        result.sample_ids = list(
            session.scalars(
                select(selection.key)
                .where(selection.eligible)
                .order_by(selection.key)
                .limit(SAMPLE_IDS)
            )
        )
        if rule.archive:
            sample = [
                dict(row._mapping)
                for row in session.execute(
                    select(table)
                    .where(selection.eligible)
                    .order_by(selection.key)
                    .limit(_SIZE_SAMPLE)
                )
            ]
            per_row = len(compress_rows(sample, compresslevel=gzip_level)) / len(sample)
            result.estimated_archive_bytes = int(per_row * result.matched)
    return result


def preview(session: Session, plan: Plan, *, gzip_level: int = DEFAULT_GZIP_LEVEL) -> PlanPreview:
    """Every rule's preview, archive sizes at ``gzip_level``. Changes nothing."""
    rules = [preview_rule(session, s, gzip_level=gzip_level) for s in plan.selections]
    return PlanPreview(plan=plan, rules=rules)
