"""Storage statistics per retained table, computed in the database without loading rows.

Row counts are the planner's estimate on PostgreSQL (``exact`` counts them), sizes come from
``pg_total_relation_size`` or SQLite's ``dbstat`` (when compiled in), and the age histogram, the
rows eligible under the policy in force and the held rows are all SQL aggregates that the
indexes on the age columns answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, and_, bindparam, func, inspect, select, text, true
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taskledger.retention.plan.holds import HeldSet, active_holds
from taskledger.retention.plan.planner import Plan
from taskledger.retention.plan.preview import make_plan
from taskledger.retention.policy.rules import Policy
from taskledger.retention.policy.tables import TABLES
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


def _bytes(session: Session, table: Table, exact: bool) -> int | None:
    """Bytes on disk with indexes. SQLite's ``dbstat`` walks every page of the table, so it is
    only asked with ``exact``; otherwise SQLite reports ``None``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return int(
            session.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": table.name}) or 0
        )
    if not exact:
        return None
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


def _estimate(session: Session, table: Table) -> tuple[int, bool]:
    """PostgreSQL's planner estimate; an exact count when the table was never analysed."""
    estimate = session.scalar(
        text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
        {"t": table.name},
    )
    if estimate is not None and estimate >= 0:  # -1: never analysed
        return int(estimate), False
    return _count(session, table, true()), True


def table_stats(
    session: Session, name: str, now: datetime, exact: bool, plan: Plan, held: HeldSet
) -> TableStats:
    """One table's statistics in one statement of index range scans; no row is loaded.

    Every figure is a scalar subquery of its own, so each still uses its index (a range of the
    age index per bucket, the ends of it for oldest and newest), while the statement is built,
    sent and answered once rather than a dozen times.
    """
    entry = TABLES[name]
    table: Table = entry.model.__table__  # type: ignore[assignment]
    age = table.c[entry.default_age_column]
    dialect = session.get_bind().dialect.name
    figures: dict[str, Any] = {}
    for label, low, high in BUCKETS:
        # Each bucket is a range of the age column's index; together, one pass over it.
        conditions = [age <= now - timedelta(days=low)]
        if high is not None:
            conditions.append(age > now - timedelta(days=high))
        figures[label] = _counted(table, and_(*conditions))
    counted = dialect != "postgresql" or exact
    if counted:
        # Every row is in a bucket, has no age yet, or is dated in the future: no extra scan.
        # A NOT NULL age column has no undated rows (SQLite would scan its index to find none).
        figures["future"] = _counted(table, age > now)
        if age.nullable:
            figures["undated"] = _counted(table, age.is_(None))
    # Apart: SQLite answers a lone min() or max() from the index, not both in one query.
    figures["oldest"] = select(func.min(age)).scalar_subquery()
    figures["newest"] = select(func.max(age)).scalar_subquery()
    rules = [s for s in plan.selections if s.table.name == name]
    for number, selection in enumerate(rules):
        # The planner's very condition, as the preview counts it.
        figures[f"eligible{number}"] = _counted(table, selection.eligible)
    if held:
        figures["held"] = _counted(table, held.held(name))
    values = session.execute(select(*(f.label(k) for k, f in figures.items()))).one()._mapping
    histogram = {label: int(values[label]) for label, _, _ in BUCKETS}
    if counted:
        rows = sum(histogram.values()) + int(values["future"]) + int(values.get("undated", 0))
        rows_exact = True
    else:
        rows, rows_exact = _estimate(session, table)
    return TableStats(
        table=name,
        rows=rows,
        rows_exact=rows_exact,
        bytes=_bytes(session, table, exact),
        age_column=entry.default_age_column,
        oldest=as_utc_or_none(values["oldest"]),
        newest=as_utc_or_none(values["newest"]),
        histogram=histogram,
        eligible=sum(int(values[f"eligible{n}"]) for n in range(len(rules))),
        held=int(values["held"]) if held else 0,
    )


def _counted(table: Table, condition: Any) -> Any:
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
        if session.get_bind().dialect.name == "postgresql" and not exact:
            rows, rows_exact = _estimate(session, audit_table)
        else:
            rows, rows_exact = _count(session, audit_table, true()), True
        audit = TableStats(
            table="retention_runs",
            rows=rows,
            rows_exact=rows_exact,
            bytes=_bytes(session, audit_table, exact),
            age_column="started_at",
            oldest=as_utc_or_none(session.scalar(select(func.min(RetentionRun.started_at)))),
            newest=as_utc_or_none(session.scalar(select(func.max(RetentionRun.started_at)))),
        )
    return StatsReport(policy=policy.name, generated_at=moment, tables=tables, audit_log=audit)
