"""What the Runs page reads beside the list itself: runs per status over time, the runs newer
than the ones shown, and the names of the agents of a page of runs.

Every query is bounded by the project and its filters (:func:`taskledger.services.runs
.filter_conditions`), so the index ``(project_id, started_at DESC, id DESC)`` serves it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, cast, func, select, tuple_, type_coerce
from sqlalchemy.orm import Session

from taskledger.schemas.runs import RunFilters
from taskledger.services.runs import filter_conditions
from taskledger.store.models import Agent, Run
from taskledger.store.types import as_utc_or_none

#: Bucket widths a histogram chooses from, in seconds: the narrowest giving at most
#: :data:`MAX_BUCKETS` buckets over the range.
BUCKET_SECONDS = (
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
    91 * 86400,
    365 * 86400,
    3650 * 86400,
)
MAX_BUCKETS = 48
#: Counting newer runs stops here: the page then says "1000+".
NEWER_CAP = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StatusHistogram:
    """Runs per status in equal time buckets from ``start``."""

    start: datetime
    bucket_seconds: int
    counts: list[dict[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(bucket.values()) for bucket in self.counts)

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.bucket_seconds)


def bucket_width(span: timedelta) -> int:
    """The narrowest width of :data:`BUCKET_SECONDS` that covers ``span`` in few enough buckets."""
    seconds = max(span.total_seconds(), 1.0)
    for width in BUCKET_SECONDS:
        if math.ceil(seconds / width) <= MAX_BUCKETS:
            return width
    return BUCKET_SECONDS[-1]


def _epoch_seconds(column: Any, dialect: str) -> ColumnElement[Any]:
    """Whole seconds since 1970 of a timestamp column, in SQL."""
    if dialect == "sqlite":
        # Stored as naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.
        return cast(func.strftime("%s", type_coerce(column, String)), Integer)
    return cast(func.floor(func.extract("epoch", column)), Integer)


def status_histogram(
    *, session: Session, project_id: uuid.UUID, filters: RunFilters, now: datetime
) -> StatusHistogram | None:
    """The filtered runs counted per time bucket and status (one GROUP BY), over the range of
    the filters (``since`` to ``until`` or now), or of the runs themselves when the filters
    leave it open; ``None`` when no run matches."""
    conditions = filter_conditions(project_id, filters)
    low = filters.since
    high = filters.until
    if low is None or high is None:
        bounds = session.execute(
            select(func.min(Run.started_at), func.max(Run.started_at)).where(*conditions)
        ).one()
        first, last = as_utc_or_none(bounds[0]), as_utc_or_none(bounds[1])
        if first is None or last is None:
            return None
        low = low or first
        high = high or (last if filters.since is None else max(last, now))
    assert low is not None and high is not None
    width = bucket_width(high - low)
    start_epoch = int((low - _EPOCH).total_seconds()) // width * width
    start = _EPOCH + timedelta(seconds=start_epoch)
    buckets = max(1, math.ceil((high - start).total_seconds() / width))
    if (high - start).total_seconds() % width == 0:
        buckets += 1  # the newest run sits on the last boundary
    dialect = session.get_bind().dialect.name
    index = ((_epoch_seconds(Run.started_at, dialect) - start_epoch) // width).label("bucket")
    # Grouped in an outer query, so that the expression and its parameters appear once.
    inner = select(index, Run.status.label("status")).where(*conditions).subquery()
    rows = session.execute(
        select(inner.c.bucket, inner.c.status, func.count())
        .group_by(inner.c.bucket, inner.c.status)
        .order_by(inner.c.bucket)
    ).all()
    counts: list[dict[str, int]] = [{} for _ in range(min(buckets, MAX_BUCKETS + 1))]
    for bucket, status, count in rows:
        slot = min(max(int(bucket), 0), len(counts) - 1)
        counts[slot][status] = counts[slot].get(status, 0) + int(count)
    return StatusHistogram(start=start, bucket_seconds=width, counts=counts)


def _key_of(*, session: Session, project_id: uuid.UUID, after: int) -> tuple[datetime, int] | None:
    row = session.execute(
        select(Run.started_at, Run.id).where(Run.id == after, Run.project_id == project_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def _newer(
    *, session: Session, project_id: uuid.UUID, filters: RunFilters, after: int | None
) -> list[ColumnElement[bool]]:
    conditions = filter_conditions(project_id, filters)
    if after is None:
        return conditions
    key = _key_of(session=session, project_id=project_id, after=after)
    if key is None:  # the run shown first is gone: newer means recorded since
        conditions.append(Run.id > after)
    else:
        conditions.append(tuple_(Run.started_at, Run.id) > tuple_(*key))
    return conditions


def count_newer(
    *, session: Session, project_id: uuid.UUID, filters: RunFilters, after: int | None
) -> int:
    """How many filtered runs sort before the run ``after`` (newest first), up to
    :data:`NEWER_CAP`; with no ``after`` (an empty table), how many match at all."""
    conditions = _newer(session=session, project_id=project_id, filters=filters, after=after)
    capped = select(Run.id).where(*conditions).limit(NEWER_CAP).subquery()
    return int(session.scalar(select(func.count()).select_from(capped)) or 0)


def list_newer(
    *,
    session: Session,
    project_id: uuid.UUID,
    filters: RunFilters,
    after: int | None,
    limit: int,
) -> list[Run]:
    """The ``limit`` filtered runs just before ``after`` in the list's order, newest first:
    put above the run ``after``, they continue the table without a gap."""
    conditions = _newer(session=session, project_id=project_id, filters=filters, after=after)
    rows = list(
        session.scalars(
            select(Run).where(*conditions).order_by(Run.started_at.asc(), Run.id.asc()).limit(limit)
        )
    )
    rows.reverse()
    return rows


def agent_names(*, session: Session, agent_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """The names of these agents, in one query."""
    wanted: Sequence[uuid.UUID] = sorted({a for a in agent_ids if a is not None}, key=str)
    if not wanted:
        return {}
    rows = session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(wanted)))
    return {row.id: row.name for row in rows}
