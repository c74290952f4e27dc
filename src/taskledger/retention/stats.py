"""Storage statistics per retained table, computed in the database without loading rows.

Two ways to a table's figures, and ``rows_exact`` / ``histogram_exact`` say which one was taken:

- **Counted** (SQLite always; PostgreSQL with ``exact``, or for a table the planner puts under
  :data:`ESTIMATE_FROM_ROWS` rows): ``count(*)`` of the whole table, which both databases answer
  fastest, and then as few index entries as possible. Each boundary of the age buckets is
  counted from whichever side is shorter, as a range of the age index that runs to one end of
  it; the one bucket judged largest (from the oldest and newest rows) is never stepped through
  but is what remains of the total. A rule that asks only for age and status, with no hold in
  force, is counted as its rows older than the cutoff (known from the buckets when the cutoff is
  one of their boundaries) less those of the other statuses, which are usually few.
- **Estimated** (PostgreSQL without ``exact``, from :data:`ESTIMATE_FROM_ROWS` rows): rows and
  the age histogram from the planner's statistics (:mod:`taskledger.retention.stats_planner`),
  summed over the partitions of a partitioned table; nothing is read from the table for them.

Either way oldest and newest are the ends of the age index, and the rows eligible under the
policy in force and the held rows are counted exactly, with the planner's own conditions. Sizes
come from ``pg_total_relation_size`` (every partition's) or SQLite's ``dbstat`` (when compiled
in, and only with ``exact``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Table, bindparam, func, inspect, select, text, true
from sqlalchemy import table as sql_table
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taskledger.retention.plan.holds import HeldSet, active_holds
from taskledger.retention.plan.planner import Plan, RuleSelection, status_filter
from taskledger.retention.plan.preview import make_plan
from taskledger.retention.policy.rules import Policy
from taskledger.retention.policy.tables import TABLES
from taskledger.retention.stats_planner import Leaf, leaves
from taskledger.store.models import RetentionRun
from taskledger.store.types import as_utc, as_utc_or_none, utcnow

#: The age buckets of the histogram: (label, lower bound in days, upper bound in days).
BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("<1d", 0, 1),
    ("1-7d", 1, 7),
    ("7-30d", 7, 30),
    ("30-90d", 30, 90),
    ("90-365d", 90, 365),
    (">365d", 365, None),
)
#: From this many rows (the planner's estimate), PostgreSQL answers a table's rows and age
#: histogram from its statistics unless ``exact`` is asked for; below it, counting is cheap.
ESTIMATE_FROM_ROWS = 100_000


@dataclass
class TableStats:
    table: str
    rows: int
    rows_exact: bool
    bytes: int | None
    age_column: str | None = None
    oldest: datetime | None = None
    newest: datetime | None = None
    histogram: dict[str, int] = field(default_factory=dict)
    #: False when the histogram is the planner's estimate (PostgreSQL without ``exact``).
    histogram_exact: bool = True
    eligible: int = 0
    held: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "rows_exact": self.rows_exact,
            "bytes": self.bytes,
            "age_column": self.age_column,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "histogram": self.histogram,
            "histogram_exact": self.histogram_exact,
            "eligible": self.eligible,
            "held": self.held,
        }


@dataclass
class StatsReport:
    policy: str
    generated_at: datetime
    tables: list[TableStats]
    audit_log: TableStats

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "generated_at": self.generated_at.isoformat(),
            "tables": [t.to_dict() for t in self.tables],
            "audit_log": self.audit_log.to_dict(),
        }


def _sqlite_bytes(session: Session, table: Table) -> int | None:
    """Bytes on disk with indexes, from ``dbstat``, which walks every page of the table (so
    only asked with ``exact``)."""
    names = [
        table.name,
        *(
            ix["name"]
            for ix in inspect(session.connection()).get_indexes(table.name)
            if ix.get("name")
        ),
    ]
    names += [f"sqlite_autoindex_{table.name}_{i}" for i in range(1, 4)]
    try:
        # One aggregated row per btree: SQLite walks its pages, reading no row contents.
        value = session.scalar(
            text(
                "SELECT SUM(pgsize) FROM dbstat WHERE aggregate = TRUE AND name IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": names},
        )
    except OperationalError:  # SQLite built without the dbstat table
        return None
    return int(value or 0)


def _bytes(session: Session, table: Table, exact: bool, parts: list[Leaf] | None) -> int | None:
    if parts is not None:
        return sum(leaf.bytes for leaf in parts)
    return _sqlite_bytes(session, table) if exact else None


def _leaf_rows(session: Session, parts: list[Leaf]) -> tuple[float, bool]:
    """The planner's rows of every leaf, summed; a leaf never analysed is counted instead (the
    partitions made ahead of time are empty, so that costs nothing). Also whether every figure
    was counted."""
    rows, counted = 0.0, True
    for leaf in parts:
        if leaf.analysed:
            rows, counted = rows + leaf.reltuples, False
        else:
            counting = select(func.count()).select_from(sql_table(leaf.name, schema=leaf.schema))
            rows += int(session.scalar(counting) or 0)
    return rows, counted


def table_stats(
    session: Session, name: str, now: datetime, exact: bool, plan: Plan, held: HeldSet
) -> TableStats:
    """One table's statistics, from index range scans and planner statistics; no row is
    loaded."""
    entry = TABLES[name]
    table: Table = entry.model.__table__  # type: ignore[assignment]
    age: Column[Any] = table.c[entry.default_age_column]
    rules = [s for s in plan.selections if s.table.name == name]
    parts = None
    if session.get_bind().dialect.name == "postgresql":
        parts = leaves(session, table.name, age.name)
        if not exact and (estimated := _estimated(session, name, age, now, rules, held, parts)):
            return estimated
    stats = _counted(session, name, age, now, rules, held)
    stats.bytes = _bytes(session, table, exact, parts)
    return stats


def _exact_figures(table: Table, rules: list[RuleSelection], held: HeldSet) -> dict[str, Any]:
    """Oldest, newest, eligible and held rows: index ends and the planner's own counts."""
    age = table.c[TABLES[table.name].default_age_column]
    # Apart: SQLite answers a lone min() or max() from the index, not both in one query.
    figures: dict[str, Any] = {
        "oldest": select(func.min(age)).scalar_subquery(),
        "newest": select(func.max(age)).scalar_subquery(),
    }
    if held:
        figures["held"] = _counted_where(table, held.held(table.name))
    return figures


def _estimated(
    session: Session,
    name: str,
    age: Column[Any],
    now: datetime,
    rules: list[RuleSelection],
    held: HeldSet,
    parts: list[Leaf],
) -> TableStats | None:
    """The figures with rows and histogram from PostgreSQL's statistics, or ``None`` when the
    table is small enough to count, or a leaf holding rows has no statistics to estimate from."""
    rows, counted = _leaf_rows(session, parts)
    if counted or rows < ESTIMATE_FROM_ROWS:
        return None
    shares: list[float] = [0.0] * len(BUCKETS)
    for leaf in parts:
        if leaf.reltuples <= 0:
            continue  # nothing to share out (an unanalysed leaf here was counted empty above)
        if leaf.distribution is None:
            return None
        # at[i]: rows of this leaf dated at or before the lower bound of bucket i's age.
        at = [
            leaf.reltuples * leaf.distribution.share_at_or_before(now - timedelta(days=low))
            for _, low, _ in BUCKETS
        ]
        for i in range(len(BUCKETS)):
            shares[i] += at[i] - (at[i + 1] if i + 1 < len(BUCKETS) else 0.0)
    table = age.table
    assert isinstance(table, Table)
    figures = _exact_figures(table, rules, held)
    for number, selection in enumerate(rules):
        figures[f"eligible{number}"] = _counted_where(table, selection.eligible)
    values = session.execute(select(*(f.label(k) for k, f in figures.items()))).one()._mapping
    return TableStats(
        table=name,
        rows=round(rows),
        rows_exact=False,
        bytes=sum(leaf.bytes for leaf in parts),
        age_column=age.name,
        oldest=as_utc_or_none(values["oldest"]),
        newest=as_utc_or_none(values["newest"]),
        histogram={
            label: max(0, round(n)) for (label, _, _), n in zip(BUCKETS, shares, strict=True)
        },
        histogram_exact=False,
        eligible=sum(int(values[f"eligible{n}"]) for n in range(len(rules))),
        held=int(values["held"]) if held else 0,
    )


def _counted(
    session: Session,
    name: str,
    age: Column[Any],
    now: datetime,
    rules: list[RuleSelection],
    held: HeldSet,
) -> TableStats:
    """Every figure counted, stepping through as few index entries as the buckets allow."""
    table = age.table
    assert isinstance(table, Table)
    # The lower bound of each bucket's age: bucket i holds bounds[i + 1] < age <= bounds[i].
    bounds = [now - timedelta(days=low) for _, low, _ in BUCKETS]
    first: dict[str, Any] = {
        # Both databases count a whole table fastest of all (SQLite adds up its pages' cells).
        "rows": select(func.count()).select_from(table).scalar_subquery(),
        "future": _counted_where(table, age > now),
        **_exact_figures(table, rules, held),
    }
    # A NOT NULL age column has no undated rows (SQLite would scan its index to find none).
    if age.nullable:
        first["undated"] = _counted_where(table, age.is_(None))
    values = dict(session.execute(select(*(f.label(k) for k, f in first.items()))).one()._mapping)
    rows = int(values["rows"])
    dated = rows - int(values.get("undated", 0))
    oldest, newest = as_utc_or_none(values["oldest"]), as_utc_or_none(values["newest"])
    guess = _Spread(oldest, newest, dated)
    # newer[i]: rows dated after bounds[i]. The boundaries before the cheapest split are counted
    # from the newest end, the others from the oldest; the bucket at the split is the remainder.
    split = guess.cheapest_split(bounds) if dated else 0
    second: dict[str, Any] = {}
    for i in range(1, len(bounds)) if dated else ():
        if i <= split:
            second[f"b{i}"] = _counted_where(table, age > bounds[i])
        else:
            second[f"b{i}"] = _counted_where(table, age <= bounds[i])
    eligible_parts = [
        _eligible_parts(table, age, selection, number, held, bounds, guess, dated)
        for number, selection in enumerate(rules)
    ]
    for parts in eligible_parts:
        second.update(parts.figures)
    if second:
        statement = select(*(f.label(k) for k, f in second.items()))
        values.update(session.execute(statement).one()._mapping)
    newer = [int(values["future"])]
    for i in range(1, len(bounds)):
        if not dated:
            newer.append(0)
        elif i <= split:
            newer.append(int(values[f"b{i}"]))
        else:
            newer.append(dated - int(values[f"b{i}"]))
    histogram = {
        label: (newer[i + 1] if i + 1 < len(bounds) else dated) - newer[i]
        for i, (label, _, _) in enumerate(BUCKETS)
    }
    return TableStats(
        table=name,
        rows=rows,
        rows_exact=True,
        bytes=None,
        age_column=age.name,
        oldest=oldest,
        newest=newest,
        histogram=histogram,
        eligible=sum(parts.total(values, newer, dated) for parts in eligible_parts),
        held=int(values["held"]) if held else 0,
    )


@dataclass(frozen=True)
class _Spread:
    """Where a table's dated rows probably lie: evenly between its oldest and newest row. Only
    used to choose which side of a boundary to count; every figure is still counted exactly."""

    oldest: datetime | None
    newest: datetime | None
    dated: int

    def newer_than(self, moment: datetime) -> float:
        if self.oldest is None or self.newest is None:
            return 0.0
        if moment < self.oldest:
            return float(self.dated)
        if moment >= self.newest:
            return 0.0
        span = (self.newest - self.oldest).total_seconds()
        return self.dated * (self.newest - moment).total_seconds() / span

    def cost(self, moment: datetime, *, from_newest: bool) -> float:
        """Index entries stepped through to count the rows on one side of ``moment``. A range
        that runs to the newest end of the index needs no comparison per entry on SQLite; the
        other side does (it stops at ``moment``), about twice the work per entry."""
        newer = self.newer_than(moment)
        return newer if from_newest else 2 * (self.dated - newer)

    def cheapest_split(self, bounds: list[datetime]) -> int:
        """The bucket whose rows are left uncounted: the boundaries ``1..split`` are counted from
        the newest end, ``split + 1..`` from the oldest."""
        costs = [
            sum(self.cost(b, from_newest=True) for b in bounds[1 : split + 1])
            + sum(self.cost(b, from_newest=False) for b in bounds[split + 1 :])
            for split in range(len(bounds))
        ]
        return costs.index(min(costs))


@dataclass(frozen=True)
class _EligibleParts:
    """How one rule's eligible rows are counted: directly (``eligible{n}``), or as the rows
    older than its cutoff (``older{n}``, or derived from the bucket boundary ``bound``, less the
    rows exactly at it, ``at{n}``) less those of the statuses it does not take (``other{n}``)."""

    number: int
    figures: dict[str, Any]
    bound: int | None = None
    newer_side: bool = False
    direct: bool = False
    nothing: bool = False

    def total(self, values: Mapping[str, Any], newer: list[int], dated: int) -> int:
        n = self.number
        if self.nothing:
            return 0
        if self.direct:
            return int(values[f"eligible{n}"])
        if self.bound is not None:
            older = dated - newer[self.bound] - int(values[f"at{n}"])
        elif self.newer_side:
            older = dated - int(values[f"older{n}"])
        else:
            older = int(values[f"older{n}"])
        return older - int(values.get(f"other{n}", 0))


def _eligible_parts(
    table: Table,
    age: Column[Any],
    selection: RuleSelection,
    number: int,
    held: HeldSet,
    bounds: list[datetime],
    guess: _Spread,
    dated: int,
) -> _EligibleParts:
    rule, entry = selection.rule, selection.table
    status = table.c.get("status")
    statuses = status_filter(rule, entry)
    plain = (
        # The first rule of its table, no hold in force and nothing protected: the planner's
        # condition is then exactly "age before the cutoff, status among these" (its
        # exclusions are all false), and counting it in two parts gives the same number.
        number == 0
        and not held
        and selection.protected is None
        and rule.age_column == age.name
        and rule.age_column not in entry.age_fallbacks
        and not rule.projects
        and rule.has_acknowledgements is None
        and rule.action != "scrub"
        # Every row has one of the table's statuses (NOT NULL and a CHECK constraint), so the
        # rows of the other statuses are the rest of the rows older than the cutoff.
        and (not statuses or (status is not None and not status.nullable))
    )
    if not plain:
        return _EligibleParts(
            number, {f"eligible{number}": _counted_where(table, selection.eligible)}, direct=True
        )
    cutoff = selection.cutoff
    figures: dict[str, Any] = {}
    others = [s for s in entry.statuses if s not in statuses] if statuses else []
    if others:
        assert status is not None
        figures[f"other{number}"] = _counted_where(table, (age < cutoff) & status.in_(others))
    if not dated:
        return _EligibleParts(number, {}, nothing=True)  # no row has an age to be older by
    if cutoff in bounds:
        bound = bounds.index(cutoff)
        figures[f"at{number}"] = _counted_where(table, age == cutoff)
        return _EligibleParts(number, figures, bound=bound)
    newer_side = guess.cost(cutoff, from_newest=True) < guess.cost(cutoff, from_newest=False)
    figures[f"older{number}"] = _counted_where(table, age >= cutoff if newer_side else age < cutoff)
    return _EligibleParts(number, figures, newer_side=newer_side)


def _counted_where(table: Table, condition: Any) -> Any:
    """``count(*)`` of the rows of ``table`` meeting ``condition``, as a scalar subquery."""
    return select(func.count()).select_from(table).where(condition).scalar_subquery()


def _count(session: Session, table: Table, condition: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(condition)) or 0)


def collect_stats(
    engine: Engine, policy: Policy, *, exact: bool = False, now: datetime | None = None
) -> StatsReport:
    """Statistics of every retained table and of the audit log."""
    moment = as_utc(now) if now else utcnow()
    with Session(engine) as session, session.begin():
        plan = make_plan(session, policy, moment)
        held = active_holds(session)
        tables = [table_stats(session, name, moment, exact, plan, held) for name in TABLES]
        audit_table: Table = RetentionRun.__table__  # type: ignore[assignment]
        parts = None
        rows, rows_exact = 0, True
        if session.get_bind().dialect.name == "postgresql":
            parts = leaves(session, audit_table.name, "started_at")
            if not exact:
                estimate, counted = _leaf_rows(session, parts)
                rows, rows_exact = round(estimate), counted
        if exact or parts is None:
            rows, rows_exact = _count(session, audit_table, true()), True
        audit = TableStats(
            table="retention_runs",
            rows=rows,
            rows_exact=rows_exact,
            bytes=_bytes(session, audit_table, exact, parts),
            age_column="started_at",
            oldest=as_utc_or_none(session.scalar(select(func.min(RetentionRun.started_at)))),
            newest=as_utc_or_none(session.scalar(select(func.max(RetentionRun.started_at)))),
        )
    return StatsReport(policy=policy.name, generated_at=moment, tables=tables, audit_log=audit)
