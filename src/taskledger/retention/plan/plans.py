"""Confirmed plans: the preview an execution confirms, used once and only while it is fresh.

A preview is recorded in the audit log with its ``plan_id``. An execution names that plan (the
API's ``confirm``; the CLI and the scheduler pass the preview they just made) and **claims** it:
one conditional UPDATE sets the preview row's ``consumed_by`` to the execution's audit row, only
while it is unset and the preview is younger than ``TASKLEDGER_RETENTION_PLAN_TTL``. Of two
executions of one plan, however close together, exactly one claims it; the other is refused.

An execution claims its plan once it holds the single-runner lock and the plan has passed the
stale check and the caps, just before the first batch: a refusal by any of those leaves the plan
unclaimed (so it can be executed again with ``force`` and a ``reason``, or once the lock is
free, within its TTL). From the claim on, the plan is spent, whatever the execution's outcome.
A dry run (``TASKLEDGER_RETENTION_DRY_RUN_ONLY``) changes nothing and claims nothing, but a
spent or expired plan is refused there too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, exists, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from taskledger.enums import RetentionMode, RetentionOutcome, RetentionTrigger
from taskledger.errors import ConflictError, SafeguardRefused
from taskledger.retention.audit import record
from taskledger.retention.plan.preview import PlanPreview
from taskledger.retention.policy.rules import Policy
from taskledger.settings import DEFAULT_PLAN_TTL
from taskledger.store.engine import read_only
from taskledger.store.models import RetentionRun
from taskledger.store.types import as_utc, utcnow

#: A plan is refused as stale when a rule's count grew by more than this since its preview.
STALE_GROWTH = 0.10


class PlanSpent(SafeguardRefused):
    """The plan was already executed: a plan is single-use."""


class PlanExpired(SafeguardRefused):
    """The plan's preview is older than the plan TTL."""


@dataclass
class RecordedPreview(PlanPreview):
    """A preview as recorded in the audit log: its row, and when it was recorded."""

    retention_run_id: int
    recorded_at: datetime


@dataclass(frozen=True)
class ConfirmedPlan:
    """A previewed plan someone confirmed: its id, its moment, the counts they saw, and the
    audit row of its preview (which the execution claims)."""

    plan_id: str
    now: datetime
    matched: Mapping[str, int]
    preview_id: int
    previewed_at: datetime

    @classmethod
    def from_preview(cls, previewed: RecordedPreview) -> ConfirmedPlan:
        """The plan of a preview just made and recorded (the CLI and the scheduler)."""
        return cls(
            plan_id=previewed.plan_id,
            now=previewed.plan.now,
            matched={r.name: r.matched for r in previewed.rules},
            preview_id=previewed.retention_run_id,
            previewed_at=previewed.recorded_at,
        )


def _spent_by(session: Session, plan_id: str) -> int | None:
    """The execution that used ``plan_id``, if one did."""
    return session.scalar(
        select(RetentionRun.consumed_by)
        .where(
            RetentionRun.plan_id == plan_id,
            RetentionRun.mode == RetentionMode.PREVIEW.value,
            RetentionRun.consumed_by.is_not(None),
        )
        .limit(1)
    )


def _spent(plan_id: str, execution: int) -> PlanSpent:
    return PlanSpent(
        f"Plan {plan_id} was already executed by retention run {execution}; a plan is "
        "single-use. Preview again."
    )


def _expired(plan_id: str, previewed_at: datetime, ttl: int) -> PlanExpired:
    return PlanExpired(
        f"Plan {plan_id} was previewed at {previewed_at.isoformat(timespec='seconds')}, more "
        f"than TASKLEDGER_RETENTION_PLAN_TTL ({ttl} s) ago; it has expired. Preview again."
    )


def find_preview(
    sessions: sessionmaker[Session],
    plan_id: str,
    policy: Policy,
    *,
    ttl: int = DEFAULT_PLAN_TTL,
    now: datetime | None = None,
) -> ConfirmedPlan:
    """The preview that produced ``plan_id`` for this very policy, from the audit log, if it
    can still be executed.

    Raises:
        ConflictError: No such preview, or it was made with another policy.
        PlanSpent: An execution already used the plan.
        PlanExpired: The preview is older than ``ttl`` seconds.
    """
    with read_only(sessions)() as session:
        row = session.scalar(
            select(RetentionRun)
            .where(RetentionRun.plan_id == plan_id, RetentionRun.mode == RetentionMode.PREVIEW)
            .order_by(RetentionRun.id.desc())
            .limit(1)
        )
        spent_by = _spent_by(session, plan_id) if row is not None else None
    if row is None or not isinstance(row.counts, Mapping):
        raise ConflictError(f"No preview has plan_id {plan_id!r}; preview the policy first.")
    if row.policy_hash != policy.policy_hash:
        raise ConflictError("The plan was previewed with another policy; preview it again.")
    if spent_by is not None:
        raise _spent(plan_id, spent_by)
    previewed_at = as_utc(row.started_at)
    if previewed_at + timedelta(seconds=ttl) < (now or utcnow()):
        raise _expired(plan_id, previewed_at, ttl)
    counts = row.counts
    return ConfirmedPlan(
        plan_id=plan_id,
        now=as_utc(datetime.fromisoformat(str(counts["now"]))),
        matched={str(r["name"]): int(r["matched"]) for r in counts.get("rules", [])},
        preview_id=row.id,
        previewed_at=previewed_at,
    )


def confirm_plan(
    sessions: sessionmaker[Session],
    plan_id: str,
    policy: Policy,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
    ttl: int = DEFAULT_PLAN_TTL,
) -> ConfirmedPlan:
    """:func:`find_preview`, with a refusal recorded in the audit log when it fails."""
    try:
        return find_preview(sessions, plan_id, policy, ttl=ttl)
    except (ConflictError, SafeguardRefused) as exc:
        record_refusal(sessions, exc, policy, plan_id, actor=actor, trigger=trigger)
        raise


def record_refusal(
    sessions: sessionmaker[Session],
    exc: ConflictError | SafeguardRefused,
    policy: Policy,
    plan_id: str,
    *,
    actor: str,
    trigger: RetentionTrigger | str,
) -> None:
    """Write the audit row of an execution of ``plan_id`` refused before it began."""
    record(
        sessions,
        actor=actor,
        trigger=trigger,
        mode=RetentionMode.EXECUTE,
        outcome=RetentionOutcome.REFUSED,
        error=str(exc.detail),
        policy_name=policy.name,
        policy_hash=policy.policy_hash,
        plan_id=plan_id[:64],
    )


def check_usable(sessions: sessionmaker[Session], confirmed: ConfirmedPlan, *, ttl: int) -> None:
    """Refuse a plan that is spent or expired (a read only: :func:`claim_plan` is the claim)."""
    with read_only(sessions)() as session:
        spent_by = _spent_by(session, confirmed.plan_id)
    if spent_by is not None:
        raise _spent(confirmed.plan_id, spent_by)
    if confirmed.previewed_at + timedelta(seconds=ttl) < utcnow():
        raise _expired(confirmed.plan_id, confirmed.previewed_at, ttl)


def claim_plan(engine: Engine, confirmed: ConfirmedPlan, execution_id: int, *, ttl: int) -> None:
    """Mark the plan's preview as used by ``execution_id``, atomically.

    One conditional UPDATE: it matches only while no preview of this ``plan_id`` is spent and
    the preview is younger than ``ttl`` seconds. Two executions racing for one plan both run it;
    the row lock (PostgreSQL) or the write lock (SQLite, ``BEGIN IMMEDIATE``) lets one through,
    and the other's UPDATE then finds ``consumed_by`` set and matches nothing.

    Raises:
        PlanSpent: Another execution claimed the plan first.
        PlanExpired: The preview is older than ``ttl`` seconds.
    """
    other = aliased(RetentionRun)
    oldest_fresh = utcnow() - timedelta(seconds=ttl)
    bind = engine.execution_options(sqlite_begin="IMMEDIATE")
    with bind.begin() as conn:
        claimed = conn.execute(
            update(RetentionRun)
            .where(
                RetentionRun.id == confirmed.preview_id,
                RetentionRun.consumed_by.is_(None),
                RetentionRun.started_at >= oldest_fresh,
                ~exists().where(
                    other.plan_id == confirmed.plan_id,
                    other.mode == RetentionMode.PREVIEW.value,
                    other.consumed_by.is_not(None),
                ),
            )
            .values(consumed_by=execution_id)
        ).rowcount
        if claimed:
            return
        spent_by = conn.scalar(
            select(other.consumed_by)
            .where(
                other.plan_id == confirmed.plan_id,
                other.mode == RetentionMode.PREVIEW.value,
                other.consumed_by.is_not(None),
            )
            .limit(1)
        )
    if spent_by is not None:
        raise _spent(confirmed.plan_id, spent_by)
    if confirmed.previewed_at < oldest_fresh:
        raise _expired(confirmed.plan_id, confirmed.previewed_at, ttl)
    raise ConflictError(
        f"The preview of plan {confirmed.plan_id} is not in the audit log; preview again."
    )


def check_not_stale(confirmed: ConfirmedPlan, current: PlanPreview) -> None:
    """Refuse when any rule would now take more than 10 % more rows than its preview showed."""
    before = confirmed.matched
    for rule in current.rules:
        allowed = before.get(rule.name, 0) * (1 + STALE_GROWTH)
        if rule.matched > allowed:
            raise SafeguardRefused(
                f"The plan is stale: rule {rule.name!r} now matches {rule.matched} rows, "
                f"{before.get(rule.name, 0)} when previewed. Preview again."
            )
