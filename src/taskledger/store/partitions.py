"""PostgreSQL: ``runs`` as a table range-partitioned on ``started_at``.

Retention removes old runs by the partition: dropping a partition costs the same whatever its
size, where deleting its rows one by one bloats the table and its indexes and leaves VACUUM to
clean up. SQLite keeps one plain table; nothing here applies to it.

- **Periods.** A partition holds one UTC day, ISO week (from Monday) or calendar month of
  ``started_at`` (``TASKLEDGER_RUNS_PARTITION``, default ``month``). It is named after its lower
  bound, ``runs_pYYYYMMDD``, whatever its period, so partitions made under one setting and then
  another never share a name; a new partition is clipped so that it never overlaps an old one.
- **Ahead.** :func:`ensure_partitions` creates the partition of the current period and the
  next :data:`AHEAD` ones. ``taskledger serve`` calls it at start and then every 15 minutes, as do
  ``taskledger db upgrade`` and every retention run, so the partitions are there before their
  rows arrive.
- **A default partition**, ``runs_default``, takes any row outside every range (a run recorded
  with a ``started_at`` far in the past or the future). When :func:`ensure_partitions` creates a
  range that the default partition holds rows of, it moves them into the new partition.
- **Idempotency keys** must be unique per project, which a partitioned table cannot enforce
  (a unique index must hold the partition key). The side table ``run_idempotency_keys`` holds
  one row per key, kept by statement triggers on ``runs`` (insert, update, delete, truncate), so
  the uniqueness stays exact and a duplicate is refused with the same unique violation as before.
  Dropping a partition fires no trigger: :func:`forget_keys` removes its keys first.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
#: Periods created ahead of the current one.
AHEAD = 3
#: How long creating a partition waits for its lock on runs before it gives up for this time.
LOCK_TIMEOUT = "100ms"
LOCK_NOT_AVAILABLE = "55P03"
DEFAULT_PARTITION = "runs_default"
KEYS_TABLE = "run_idempotency_keys"
_NAME = re.compile(r"runs_p\d{8}")


@dataclass(frozen=True)
class Partition:
    """One partition of ``runs``: its name and range (``lower`` ≤ started_at < ``upper``);
    both bounds are ``None`` for the default partition."""

    name: str
    lower: datetime | None
    upper: datetime | None

    @property
    def is_default(self) -> bool:
        return self.lower is None


def period_start(moment: datetime, period: Period) -> datetime:
    """The start (UTC midnight) of the period holding ``moment``."""
    day = moment.astimezone(UTC).date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def next_start(start: datetime, period: Period) -> datetime:
    """The start of the period after the one beginning at ``start``."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=1)


def partition_name(lower: datetime) -> str:
    return f"runs_p{lower.astimezone(UTC):%Y%m%d}"


def is_partition_name(name: str | None) -> bool:
    """Whether ``name`` is one this module gives a partition of ``runs``."""
    return name == DEFAULT_PARTITION or (name is not None and _NAME.fullmatch(name) is not None)


def is_partitioned(conn: Connection) -> bool:
    """Whether ``runs`` is a partitioned table (PostgreSQL after migration 0006)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('runs')"))
    return kind.scalar() == "p"


_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


def list_partitions(conn: Connection) -> list[Partition]:
    """The partitions of ``runs`` in range order, the default partition (if any) last."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('runs')"
        )
    ).all()
    ranged: list[Partition] = []
    default: list[Partition] = []
    for name, bound in rows:
        match = _BOUNDS.search(bound or "")
        if match is None:
            default.append(Partition(name, None, None))
            continue
        lower, upper = (datetime.fromisoformat(value).astimezone(UTC) for value in match.groups())
        ranged.append(Partition(name, lower, upper))
    ranged.sort(key=lambda p: p.lower or datetime.min.replace(tzinfo=UTC))
    return ranged + default


def _ranges_wanted(
    existing: list[Partition], starts: list[datetime], period: Period
) -> list[tuple[datetime, datetime]]:
    """The ranges to create for the periods beginning at ``starts``, each clipped so that it
    overlaps no existing partition (a range wholly covered already is left out)."""
    taken = [(p.lower, p.upper) for p in existing if p.lower is not None and p.upper is not None]
    wanted: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        lower, upper = start, next_start(start, period)
        for low, high in sorted(taken):
            if high <= lower or low >= upper:
                continue
            if low <= lower:
                lower = max(lower, high)
            else:
                upper = min(upper, low)
        if lower < upper and not any(lo <= lower and upper <= hi for lo, hi in taken):
            wanted.append((lower, upper))
            taken.append((lower, upper))
    return wanted


def _literal(moment: datetime) -> str:
    return f"'{moment.astimezone(UTC).isoformat()}'"


def create_partition(conn: Connection, lower: datetime, upper: datetime) -> str:
    """Create the partition for ``[lower, upper)``; rows of that range in the default partition
    move into it (directly between the partitions: the idempotency keys do not change)."""
    name = partition_name(lower)
    bounds = f"FOR VALUES FROM ({_literal(lower)}) TO ({_literal(upper)})"
    in_range = f"started_at >= {_literal(lower)} AND started_at < {_literal(upper)}"
    has_default = conn.execute(text(f"SELECT to_regclass('{DEFAULT_PARTITION}')")).scalar()
    moving = (
        has_default
        and conn.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE {in_range})")  # noqa: S608
        ).scalar()
    )
    if not moving:
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF runs {bounds}"))
        return name
    conn.execute(text(f"CREATE TABLE {name} (LIKE runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    conn.execute(text(f"INSERT INTO {name} SELECT * FROM {DEFAULT_PARTITION} WHERE {in_range}"))  # noqa: S608
    conn.execute(text(f"DELETE FROM {DEFAULT_PARTITION} WHERE {in_range}"))  # noqa: S608
    conn.execute(text(f"ALTER TABLE runs ATTACH PARTITION {name} {bounds}"))
    log.info("moved the rows of %s out of %s", name, DEFAULT_PARTITION)
    return name


def configured_period() -> Period:
    """``TASKLEDGER_RUNS_PARTITION``, as the settings read it."""
    from taskledger.settings import Settings

    return Settings().runs_partition


def ensure_partitions(
    engine: Engine,
    period: Period | None = None,
    *,
    now: datetime | None = None,
    ahead: int = AHEAD,
    cover: tuple[datetime, datetime] | None = None,
) -> list[str]:
    """Create the missing partitions: the current period's and the ``ahead`` next ones, every
    period the default partition holds rows of (those rows move into it), every period meeting
    ``cover`` (``(oldest, newest)``: a span about to be written, such as a backfill) and the
    default partition itself; returns the names created. A no-op unless ``runs`` is
    partitioned. Replicas may run it at once: an advisory lock serialises them."""
    period = period or configured_period()
    try:
        return _ensure(engine, period, now=now, ahead=ahead, cover=cover)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        # A long reader of runs (an export, say): waiting for it would make every query of
        # runs wait behind this one. The next call tries again; the default partition takes
        # the rows meanwhile.
        log.warning("runs is busy: its partitions ahead were not created this time")
        return []


def _ensure(
    engine: Engine,
    period: Period,
    *,
    now: datetime | None,
    ahead: int,
    cover: tuple[datetime, datetime] | None,
) -> list[str]:
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('taskledger.runs.partitions'))"))
        # Creating a partition needs runs to itself for a moment; others wait behind it.
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        starts = _ahead(period_start(now or datetime.now(UTC), period), period, ahead)
        if cover is not None:
            start, end = period_start(cover[0], period), cover[1]
            while start <= end:
                starts.append(start)
                start = next_start(start, period)
        if conn.execute(text(f"SELECT to_regclass('{DEFAULT_PARTITION}')")).scalar():
            starts += _periods_held(conn, DEFAULT_PARTITION, period)
        return _create(conn, starts, period)


def _ahead(start: datetime, period: Period, ahead: int) -> list[datetime]:
    starts = [start]
    for _ in range(ahead):
        starts.append(next_start(starts[-1], period))
    return starts


def _periods_held(conn: Connection, table: str, period: Period) -> list[datetime]:
    """The start of every period that rows of ``table`` fall in."""
    held = conn.execute(
        text(
            f"SELECT DISTINCT date_trunc('{period}', started_at AT TIME ZONE 'UTC') "  # noqa: S608
            f"FROM {table}"
        )
    ).scalars()
    return [period_start(moment.replace(tzinfo=UTC), period) for moment in held]


def _create(conn: Connection, starts: list[datetime], period: Period) -> list[str]:
    existing = list_partitions(conn)
    wanted = _ranges_wanted(existing, starts, period)
    has_default = any(p.is_default for p in existing)
    if not wanted and has_default:
        return []
    # Every lock the creation needs, taken first, while nothing else is held: a reader or
    # writer of runs (a retention batch) then makes this wait, never a deadlock with it.
    conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
    created = [create_partition(conn, low, high) for low, high in wanted]
    if not has_default:
        conn.execute(text(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF runs DEFAULT"))
        created.append(DEFAULT_PARTITION)
    if created:
        log.info("created partitions of runs: %s", ", ".join(created))
    return created


def partition_history(
    conn: Connection, period: Period, now: datetime, *, source: str, ahead: int = AHEAD
) -> list[str]:
    """Create a partition for every period that holds rows of the table ``source``, for the
    current period and the ``ahead`` next, and the default partition; used by the migration
    that partitions ``runs``, before it copies the rows of the old table (``source``) over."""
    starts = _periods_held(conn, source, period) + _ahead(period_start(now, period), period, ahead)
    return _create(conn, starts, period)


def forget_keys(conn: Connection, partition: Partition) -> None:
    """Remove the idempotency keys of ``partition``'s rows (dropping it fires no trigger)."""
    conn.execute(
        text(
            f"DELETE FROM {KEYS_TABLE} k USING {partition.name} r "  # noqa: S608
            "WHERE r.idempotency_key IS NOT NULL AND k.project_id = r.project_id "
            "AND k.idempotency_key = r.idempotency_key"
        )
    )


def detach_and_drop(conn: Connection, partition: Partition) -> None:
    """``DETACH`` then ``DROP`` ``partition``, in the caller's transaction (after
    :func:`forget_keys`)."""
    conn.execute(text(f"ALTER TABLE runs DETACH PARTITION {partition.name}"))
    conn.execute(text(f"DROP TABLE {partition.name}"))


#: How often ``taskledger serve`` checks that the partitions ahead exist (seconds).
KEEP_EVERY = 15 * 60


class PartitionKeeper:
    """``taskledger serve``, PostgreSQL: :func:`ensure_partitions` at start, then every
    :data:`KEEP_EVERY` seconds, on a daemon thread. A failure is logged and tried again at the
    next turn: the default partition takes the rows meanwhile."""

    def __init__(self, engine: Engine, period: Period, *, every: float = KEEP_EVERY) -> None:
        self.engine = engine
        self.period = period
        self.every = every
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (PostgreSQL only); an app started again starts a new one."""
        if self.engine.dialect.name != "postgresql":
            return
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="taskledger-partitions", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                ensure_partitions(self.engine, self.period)
            except Exception:
                log.exception("could not create the partitions of runs ahead")
            self.stopping.wait(self.every)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
