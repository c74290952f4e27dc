"""What retention has in store for a few runs: whether a hold protects each, and when the
policy in force will make it eligible, for the Runs page's overlay.

It reads the same things the planner does (:func:`taskledger.retention.plan.holds.active_holds`,
the policy's rules for ``runs`` in order, each with its age column, statuses and projects), for
the rows of one page only: one query for the holds, none per row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from taskledger.retention.plan.holds import HeldSet, active_holds
from taskledger.retention.policy.rules import Policy, Rule
from taskledger.store.models import Project, Run
from taskledger.store.types import as_utc

_VERBS = {"delete": "deletion", "scrub": "scrubbing", "expire": "expiry"}


@dataclass(frozen=True)
class RunRetention:
    """A run's retention outlook: held, or eligible under ``policy``'s ``rule`` at ``eligible_at``
    (no rule: no rule of the policy will ever pick it as it is now)."""

    held: bool
    policy: str | None
    rule: str | None = None
    action: str | None = None
    eligible_at: datetime | None = None

    @property
    def what(self) -> str:
        """``deletion``, ``scrubbing`` or ``expiry``."""
        return _VERBS.get(self.action or "", self.action or "")

    def describe(self, now: datetime) -> str:
        """What the page says: ``on hold``, ``eligible for deletion under default in 12 days``
        (or ``now``), or that the policy keeps the run."""
        if self.held:
            return "on hold: kept whatever the policy"
        if self.policy is None:
            return "no retention policy could be read"
        if self.rule is None:
            return f"kept by {self.policy} (no rule picks it)"
        days = self.days_left(now)
        when = "now" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        return f"eligible for {self.what} under {self.policy} {when}"

    def days_left(self, now: datetime) -> int:
        """Whole days until eligible, rounded up; 0 when it is already."""
        if self.eligible_at is None:
            return 0
        seconds = (self.eligible_at - now).total_seconds()
        return max(0, math.ceil(seconds / 86400))


def _applies(rule: Rule, run: Run, project: Project) -> bool:
    if rule.table != "runs":
        return False
    if rule.statuses is not None and run.status not in rule.statuses:
        return False
    return not rule.projects or str(project.id) in rule.projects or project.name in rule.projects


def outlook(run: Run, project: Project, policy: Policy | None, held: HeldSet) -> RunRetention:
    """One run's outlook, given the policy in force and the active holds."""
    name = policy.name if policy is not None else None
    row = {"id": run.id, "project_id": run.project_id, "agent_id": run.agent_id}
    row["task_id"] = run.task_id
    if held and held.covers("runs", row):
        return RunRetention(held=True, policy=name)
    for rule in policy.rules if policy is not None else ():
        if not _applies(rule, run, project):
            continue
        aged = getattr(run, rule.age_column, None)
        if aged is None:  # no age yet (not finished): the rule cannot pick it
            continue
        return RunRetention(
            held=False,
            policy=name,
            rule=rule.name,
            action=rule.action,
            eligible_at=as_utc(aged) + rule.older_than,
        )
    return RunRetention(held=False, policy=name)


def run_outlooks(
    *, session: Session, project: Project, runs: Iterable[Run], policy: Policy | None
) -> dict[int, RunRetention]:
    """The outlook of each of ``runs`` (by key), with the holds read once."""
    held = active_holds(session)
    return {run.id: outlook(run, project, policy, held) for run in runs}
