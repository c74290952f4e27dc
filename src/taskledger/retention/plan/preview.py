"""Previews: a policy planned against this database (its holds and projects), then counted.

``make_plan`` resolves what :func:`taskledger.retention.plan.planner.build_plan` needs from the
database; ``preview`` counts, dates, samples and sizes every rule's selection and changes
nothing. A preview's ``plan_id`` is what an execution confirms.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from taskledger.retention.archive.format import compress_rows
from taskledger.retention.execute.partitions import partition_paths
from taskledger.retention.plan.holds import active_holds
from taskledger.retention.plan.planner import Plan, RuleSelection, build_plan
from taskledger.retention.policy.rules import Policy, PolicyError
from taskledger.services.projects import find_project
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.types import as_utc_or_none

SAMPLE_IDS = 5
_SIZE_SAMPLE = 200


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
    #: PostgreSQL, a rule deleting runs: the path each partition holding its rows takes.
    partitions: list[dict[str, Any]] = field(default_factory=list)

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
            "partitions": self.partitions,
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


def make_plan(session: Session, policy: Policy, now: datetime) -> Plan:
    """The plan of ``policy`` at ``now``, with the holds and projects of this database."""
    bind = session.get_bind()
    return build_plan(
        policy,
        now,
        held=active_holds(session),
        project_ids=resolve_projects(session, policy),
        dialect=bind.dialect.name,
    )


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
    """Count, date, sample and size one rule's selection, with the path of each partition of
    runs (only count it without ``details``); the size is what its archive parts would take at
    ``gzip_level``."""
    rule, table = selection.rule, selection.table.model.__table__
    # PostgreSQL, a rule deleting runs: counted partition by partition (the counts the paths
    # are decided on), instead of once more over all of them.
    paths = partition_paths(session.connection(), selection)
    result = RulePreview(
        name=rule.name,
        table=rule.table,
        action=rule.action,
        archive=rule.archive,
        cutoff=selection.cutoff,
    )
    if paths is not None:
        result.matched = sum(p.selected for p in paths)
    elif not details:
        result.matched = _count(session, selection, selection.eligible)
    else:
        matched, oldest, newest = session.execute(
            select(func.count(), func.min(selection.age), func.max(selection.age))
            .select_from(table)
            .where(selection.eligible)
        ).one()
        result.matched = int(matched or 0)
        result.oldest, result.newest = as_utc_or_none(oldest), as_utc_or_none(newest)
    if not details:
        return result
    if paths is not None and result.matched:
        # min and max alone: each an end of the age index.
        oldest, newest = session.execute(
            select(func.min(selection.age), func.max(selection.age)).where(selection.eligible)
        ).one()
        result.oldest, result.newest = as_utc_or_none(oldest), as_utc_or_none(newest)
    result.held = _count(session, selection, selection.held) if selection.held is not None else 0
    if selection.protected is not None:
        result.protected = _count(session, selection, selection.protected)
    if result.matched:
        if paths:
            result.partitions = [p.to_dict() for p in paths]
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


def preview(
    session: Session, plan: Plan, *, gzip_level: int = DEFAULT_GZIP_LEVEL, details: bool = True
) -> PlanPreview:
    """Every rule's preview (only its count without ``details``), archive sizes at
    ``gzip_level``. Changes nothing."""
    rules = [
        preview_rule(session, s, details=details, gzip_level=gzip_level) for s in plan.selections
    ]
    return PlanPreview(plan=plan, rules=rules)


def preview_at(
    session: Session,
    policy: Policy,
    now: datetime,
    *,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
    details: bool = True,
) -> PlanPreview:
    """``policy`` planned at ``now`` against this database and previewed: the one call the
    runner makes to the planner, for a preview and again when the plan is executed (at the
    preview's moment, and without ``details``: what the safeguards and the executor need of it
    is each rule's count)."""
    plan = make_plan(session, policy, now)
    return preview(session, plan, gzip_level=gzip_level, details=details)
