"""How old the retained rows are, and how many the policy in force will take soon.

For the retention console: an age histogram per table, by status (one ``GROUP BY`` over the
age buckets of :data:`taskledger.retention.stats.BUCKETS`, the same SQL on SQLite and
PostgreSQL), and per rule of a policy how many rows it may take now and how many more come of
age within the next days (the rule planned at a later moment, counted against its cutoff now).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, literal_column, select
from sqlalchemy.orm import Session

from taskledger.retention.plan.preview import make_plan
from taskledger.retention.policy.rules import Policy
from taskledger.retention.policy.tables import TABLES
from taskledger.retention.stats import BUCKETS
from taskledger.store.types import as_utc

#: The bucket of rows dated after now (a clock ahead of the server's) or not dated at all.
FUTURE = "future"
UNDATED = "undated"
#: The horizons of the "expiring soon" timeline, in days.
HORIZONS = (7, 30)


@dataclass(frozen=True)
class AgeHistogram:
    """One table's rows per age bucket and status, its buckets in :data:`BUCKETS` order."""

    table: str
    age_column: str
    statuses: tuple[str, ...]
    #: label -> status -> rows; every bucket of :data:`BUCKETS` is present, ``future`` and
    #: ``undated`` only when some rows fall there.
    buckets: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for counts in self.buckets.values())


def _age(name: str) -> ColumnElement[Any]:
    entry = TABLES[name]
    c = entry.model.__table__.c
    fallback = entry.age_fallbacks.get(entry.default_age_column)
    column = c[entry.default_age_column]
    return func.coalesce(column, c[fallback]) if fallback else column


def age_histogram(session: Session, name: str, *, now: datetime) -> AgeHistogram:
    """Rows of retained table ``name`` per age bucket (by its default age column) and status.

    One scan grouped by a ``CASE`` of the bucket bounds: the bucket is computed in a subquery
    and grouped on by name, so no database has to match two copies of the expression."""
    entry = TABLES[name]
    table: Table = entry.model.__table__  # type: ignore[assignment]
    moment = as_utc(now)
    age = _age(name)
    # The bucket as a small integer written into the SQL (an untyped text parameter in a
    # CASE is a type PostgreSQL cannot always infer); the labels are mapped back here.
    labels = [UNDATED, FUTURE, *(label for label, _, _ in BUCKETS)]
    whens: list[tuple[ColumnElement[bool], Any]] = [
        (age.is_(None), literal_column("0")),
        (age > moment, literal_column("1")),
    ]
    for number, (_label, _low, high) in enumerate(BUCKETS, start=2):
        if high is not None:
            whens.append((age > moment - timedelta(days=high), literal_column(str(number))))
    bucket = case(*whens, else_=literal_column(str(len(labels) - 1)))
    inner = select(bucket.label("bucket"), table.c.status.label("status")).subquery()
    rows = session.execute(
        select(inner.c.bucket, inner.c.status, func.count().label("rows")).group_by(
            inner.c.bucket, inner.c.status
        )
    ).all()
    buckets: dict[str, dict[str, int]] = {label: {} for label, _, _ in BUCKETS}
    for number, status, count in rows:
        buckets.setdefault(labels[int(number)], {})[str(status)] = int(count)
    return AgeHistogram(
        table=name, age_column=entry.default_age_column, statuses=entry.statuses, buckets=buckets
    )


def age_histograms(session: Session, *, now: datetime) -> list[AgeHistogram]:
    """:func:`age_histogram` of every retained table."""
    return [age_histogram(session, name, now=now) for name in TABLES]


@dataclass(frozen=True)
class RuleExpiry:
    """How many rows one rule may take now, and how many more come of age within each horizon
    (cumulative: ``soon[30]`` includes ``soon[7]``)."""

    name: str
    table: str
    action: str
    cutoff: datetime
    eligible_now: int
    soon: dict[int, int]


def expiring(
    session: Session, policy: Policy, *, now: datetime, horizons: Sequence[int] = HORIZONS
) -> list[RuleExpiry]:
    """Per rule of ``policy``: the rows eligible now, and the rows it will have made eligible
    ``days`` from now that are not eligible yet (the rule planned at that moment, with today's
    holds and statuses, and its age column at or after today's cutoff)."""
    moment = as_utc(now)
    current = make_plan(session, policy, moment)
    later = {days: make_plan(session, policy, moment + timedelta(days=days)) for days in horizons}
    out = []
    for index, selection in enumerate(current.selections):
        table = selection.table.model.__table__
        figures = {
            "now": select(func.count())
            .select_from(table)
            .where(selection.eligible)
            .scalar_subquery()
        }
        for days, plan in later.items():
            future = plan.selections[index]
            figures[f"d{days}"] = (
                select(func.count())
                .select_from(table)
                .where(and_(future.eligible, selection.age >= selection.cutoff))
                .scalar_subquery()
            )
        values = session.execute(select(*(f.label(k) for k, f in figures.items()))).one()._mapping
        out.append(
            RuleExpiry(
                name=selection.rule.name,
                table=selection.rule.table,
                action=selection.rule.action,
                cutoff=selection.cutoff,
                eligible_now=int(values["now"]),
                soon={days: int(values[f"d{days}"]) for days in horizons},
            )
        )
    return out
