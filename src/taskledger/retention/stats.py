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
policy in force and the held rows are counted exactly: with the planner's own conditions, or for
a rule of age and status alone, in the two parts above, which add up to the same. Sizes
come from ``pg_total_relation_size`` (every partition's) or SQLite's ``dbstat`` (when compiled
in, and only with ``exact``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Table, bindparam, func, inspect, select, text
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


def _leaf_rows(session: Session, parts: list[Leaf]) -> tuple[float, bool, int]:
    """The planner's rows of every leaf, summed; a leaf never analysed is counted instead (the
    partitions made ahead of time are empty, so that costs nothing). Also whether every figure
    was counted, and how many rows the leaves never analysed hold."""
    rows, counted, unanalysed = 0.0, True, 0
    for leaf in parts:
        if leaf.analysed:
            rows, counted = rows + leaf.reltuples, False
        else:
            counting = select(func.count()).select_from(sql_table(leaf.name, schema=leaf.schema))
            unanalysed += int(session.scalar(counting) or 0)
    return rows + unanalysed, counted, unanalysed


class _Job:
    """One table's figures, gathered in two statements shared by every table: ``first`` asks
    what needs no other figure, ``second`` what depends on the first answers; ``result`` turns
    both into :class:`TableStats`. Each job's keys are its own: the collector prefixes them."""

    def first(self) -> dict[str, Any]:
        return {}

    def second(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def result(self, values: Mapping[str, Any]) -> TableStats:
        raise NotImplementedError


def _exact_figures(age: Column[Any], rules: list[RuleSelection], held: HeldSet) -> dict[str, Any]:
    """Oldest, newest and held rows: the ends of the age index, and the planner's condition."""
    table = age.table
    # Apart: SQLite answers a lone min() or max() from the index, not both in one query.
    figures: dict[str, Any] = {
        "oldest": select(func.min(age)).scalar_subquery(),
        "newest": select(func.max(age)).scalar_subquery(),
    }
    if held:
        figures["held"] = _counted_where(table, held.held(table.name))
    return figures


class _Estimated(_Job):
    """Rows and histogram from PostgreSQL's statistics; the rest counted."""

    def __init__(
        self,
        name: str,
        age: Column[Any],
        rules: list[RuleSelection],
        held: HeldSet,
        rows: float,
        histogram: dict[str, int],
    ) -> None:
        self.name, self.age, self.rules, self.held = name, age, rules, held
        self.rows, self.histogram = rows, histogram

    def first(self) -> dict[str, Any]:
        figures = _exact_figures(self.age, self.rules, self.held)
        for number, selection in enumerate(self.rules):
            figures[f"eligible{number}"] = _counted_where(self.age.table, selection.eligible)
        return figures

    def result(self, values: Mapping[str, Any]) -> TableStats:
        return TableStats(
            table=self.name,
            rows=round(self.rows),
            rows_exact=False,
            bytes=None,
            age_column=self.age.name,
            oldest=as_utc_or_none(values["oldest"]),
            newest=as_utc_or_none(values["newest"]),
            histogram=self.histogram,
            histogram_exact=False,
            eligible=sum(int(values[f"eligible{n}"]) for n in range(len(self.rules))),
            held=int(values["held"]) if self.held else 0,
        )


def _estimate(
    session: Session, now: datetime, parts: list[Leaf]
) -> tuple[float, dict[str, int]] | None:
    """``(rows, histogram)`` from the planner's statistics of every leaf, or ``None`` when the
    table is small enough to count, or a leaf holding rows has no statistics to estimate from."""
    rows, counted, unanalysed = _leaf_rows(session, parts)
    if counted or unanalysed or rows < ESTIMATE_FROM_ROWS:
        return None
    shares: list[float] = [0.0] * len(BUCKETS)
    for leaf in parts:
        if leaf.reltuples <= 0:
            continue  # nothing to share out (the leaves never analysed are empty, see above)
        if leaf.distribution is None:
            return None
        # at[i]: rows of this leaf dated at or before the lower bound of bucket i's age.
        at = [
            leaf.reltuples * leaf.distribution.share_at_or_before(now - timedelta(days=low))
            for _, low, _ in BUCKETS
        ]
        for i in range(len(BUCKETS)):
            shares[i] += at[i] - (at[i + 1] if i + 1 < len(BUCKETS) else 0.0)
    histogram = {label: max(0, round(n)) for (label, _, _), n in zip(BUCKETS, shares, strict=True)}
    return rows, histogram


class _Counted(_Job):
    """Every figure counted, stepping through as few index entries as the buckets allow."""

    def __init__(
        self, name: str, age: Column[Any], now: datetime, rules: list[RuleSelection], held: HeldSet
    ) -> None:
        self.name, self.age, self.now, self.rules, self.held = name, age, now, rules, held
        # The lower bound of each bucket's age: bucket i holds bounds[i + 1] < age <= bounds[i].
        self.bounds = [now - timedelta(days=low) for _, low, _ in BUCKETS]
        self.split = 0
        self.eligible: list[_EligibleParts] = []

    def first(self) -> dict[str, Any]:
        table, age = self.age.table, self.age
        figures: dict[str, Any] = {
            # Both databases count a whole table fastest of all (SQLite adds up the cells of
            # its pages).
            "rows": select(func.count()).select_from(table).scalar_subquery(),
            "future": _counted_where(table, age > self.now),
            **_exact_figures(age, self.rules, self.held),
        }
        # A NOT NULL age column has no undated rows (SQLite would scan its index to find none).
        if age.nullable:
            figures["undated"] = _counted_where(table, age.is_(None))
        return figures

    def _dated(self, values: Mapping[str, Any]) -> int:
        return int(values["rows"]) - int(values.get("undated", 0))

    def second(self, values: Mapping[str, Any]) -> dict[str, Any]:
        table, age, bounds = self.age.table, self.age, self.bounds
        dated = self._dated(values)
        guess = _Spread(as_utc_or_none(values["oldest"]), as_utc_or_none(values["newest"]), dated)
        figures: dict[str, Any] = {}
        if dated:
            # The boundaries up to the split are counted from the newest end of the index, the
            # others from the oldest; the bucket at the split is what remains.
            self.split = guess.cheapest_split(bounds)
            for i in range(1, len(bounds)):
                newer = i <= self.split
                figures[f"b{i}"] = _counted_where(
                    table, age > bounds[i] if newer else age <= bounds[i]
                )
        self.eligible = [
            _eligible_parts(table, age, selection, number, self.held, bounds, guess, dated)
            for number, selection in enumerate(self.rules)
        ]
        for parts in self.eligible:
            figures.update(parts.figures)
        return figures

    def result(self, values: Mapping[str, Any]) -> TableStats:
        dated = self._dated(values)
        # newer[i]: rows dated after bounds[i].
        newer = [int(values["future"])]
        for i in range(1, len(self.bounds)):
            if not dated:
                newer.append(0)
            elif i <= self.split:
                newer.append(int(values[f"b{i}"]))
            else:
                newer.append(dated - int(values[f"b{i}"]))
        newer.append(dated)
        return TableStats(
            table=self.name,
            rows=int(values["rows"]),
            rows_exact=True,
            bytes=None,
            age_column=self.age.name,
            oldest=as_utc_or_none(values["oldest"]),
            newest=as_utc_or_none(values["newest"]),
            histogram={label: newer[i + 1] - newer[i] for i, (label, _, _) in enumerate(BUCKETS)},
            eligible=sum(parts.total(values, newer, dated) for parts in self.eligible),
            held=int(values["held"]) if self.held else 0,
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


def _counted_where(table: Any, condition: Any) -> Any:
    """``count(*)`` of the rows of ``table`` meeting ``condition``, as a scalar subquery."""
    return select(func.count()).select_from(table).where(condition).scalar_subquery()


def _ask(session: Session, figures: list[dict[str, Any]], values: list[dict[str, Any]]) -> None:
    """The figures of every job in one statement (one round trip, however many tables); the
    answers of job ``i`` go into ``values[i]`` under its own keys."""
    labelled = [f.label(f"t{i}_{key}") for i, fs in enumerate(figures) for key, f in fs.items()]
    if not labelled:
        return
    answers = session.connection().execute(select(*labelled)).one()._mapping
    for i, fs in enumerate(figures):
        values[i].update((key, answers[f"t{i}_{key}"]) for key in fs)


def _job(
    session: Session, name: str, now: datetime, exact: bool, plan: Plan, held: HeldSet
) -> tuple[_Job, list[Leaf] | None]:
    """How table ``name`` is measured, and its leaves on PostgreSQL."""
    entry = TABLES[name]
    table: Table = entry.model.__table__  # type: ignore[assignment]
    age: Column[Any] = table.c[entry.default_age_column]
    rules = [s for s in plan.selections if s.table.name == name]
    if session.get_bind().dialect.name != "postgresql":
        return _Counted(name, age, now, rules, held), None
    parts = leaves(session, table.name, age.name)
    if not exact and (estimate := _estimate(session, now, parts)) is not None:
        return _Estimated(name, age, rules, held, *estimate), parts
    return _Counted(name, age, now, rules, held), parts


#: SQLite's page cache while stats run, in KiB: the range counts of one table step through
#: pages of the same age index, which SQLite's default 2 MiB cache would read again each time.
STATS_PAGE_CACHE_KIB = 65536


@contextmanager
def _page_cache(session: Session) -> Iterator[None]:
    """A larger SQLite page cache for the duration, never a smaller one; restored afterwards."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    # Negative sizes are KiB, positive ones pages (of 4 KiB unless the database says otherwise).
    if (-before if before < 0 else before * 4) >= STATS_PAGE_CACHE_KIB:
        yield
        return
    connection.exec_driver_sql(f"PRAGMA cache_size = -{STATS_PAGE_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {before}")


def collect_stats(
    engine: Engine, policy: Policy, *, exact: bool = False, now: datetime | None = None
) -> StatsReport:
    """Statistics of every retained table and of the audit log, in two statements for all the
    tables' counts, plus the planner's statistics on PostgreSQL."""
    moment = as_utc(now) if now else utcnow()
    with Session(engine) as session, session.begin(), _page_cache(session):
        plan = make_plan(session, policy, moment)
        held = active_holds(session)
        measured = [_job(session, name, moment, exact, plan, held) for name in TABLES]
        jobs = [job for job, _ in measured]
        values: list[dict[str, Any]] = [{} for _ in jobs]
        _ask(session, [job.first() for job in jobs], values)
        _ask(session, [job.second(v) for job, v in zip(jobs, values, strict=True)], values)
        tables = []
        for (job, parts), answers in zip(measured, values, strict=True):
            stats = job.result(answers)
            table: Table = TABLES[stats.table].model.__table__  # type: ignore[assignment]
            stats.bytes = _bytes(session, table, exact, parts)
            tables.append(stats)
        audit = _audit_log(session, exact)
    return StatsReport(policy=policy.name, generated_at=moment, tables=tables, audit_log=audit)


def _audit_log(session: Session, exact: bool) -> TableStats:
    """The audit log's rows, bytes, oldest and newest (it has no rules, holds or histogram)."""
    table: Table = RetentionRun.__table__  # type: ignore[assignment]
    parts = None
    figures: dict[str, Any] = {
        "oldest": select(func.min(RetentionRun.started_at)).scalar_subquery(),
        "newest": select(func.max(RetentionRun.started_at)).scalar_subquery(),
    }
    rows, rows_exact = 0.0, True
    if session.get_bind().dialect.name == "postgresql":
        parts = leaves(session, table.name, "started_at")
        if not exact:
            rows, rows_exact, _ = _leaf_rows(session, parts)
    if exact or parts is None or (not rows_exact and rows < ESTIMATE_FROM_ROWS):
        figures["rows"] = select(func.count()).select_from(table).scalar_subquery()
    values = session.connection().execute(select(*(f.label(k) for k, f in figures.items())))
    answers = values.one()._mapping
    return TableStats(
        table=table.name,
        rows=int(answers["rows"]) if "rows" in figures else round(rows),
        rows_exact=rows_exact or "rows" in figures,
        bytes=_bytes(session, table, exact, parts),
        age_column="started_at",
        oldest=as_utc_or_none(answers["oldest"]),
        newest=as_utc_or_none(answers["newest"]),
    )
