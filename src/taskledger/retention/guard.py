"""Safeguards: the deletion-spike guard, and the caps every execution is checked against.

The spike guard counts deletions outside confirmed retention runs (API deletes of records, the
seed endpoint) in a sliding window kept in the database, so all replicas share it. A delete that
would take the window over the limit is refused with 429 and ``Retry-After``, and an alert goes
out. The window is checked and recorded in one short serialised transaction (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two replicas cannot both squeeze past the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, text

from taskledger.errors import SafeguardRefused
from taskledger.retention.alerts import Alerter
from taskledger.retention.planner import PlanPreview
from taskledger.retention.policy import Policy
from taskledger.store.models import DeletionEvent
from taskledger.store.types import as_utc, utcnow

#: Arbitrary but fixed: the advisory lock that serialises spike-window updates on PostgreSQL.
SPIKE_LOCK_KEY = 7_341_001


class SpikeRefused(SafeguardRefused):
    """Too many deletions in the window; retry later."""

    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


@dataclass
class SpikeGuard:
    """The shared sliding window of deletions outside retention runs."""

    engine: Engine
    max_rows: int
    window_seconds: int
    alerter: Alerter

    def admit(self, rows: int, *, source: str, actor: str, now: datetime | None = None) -> None:
        """Record ``rows`` deletions, or refuse them with 429 when the window is full."""
        now = now or utcnow()
        since = now - timedelta(seconds=self.window_seconds)
        bind = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        with bind.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SPIKE_LOCK_KEY})
            conn.execute(delete(DeletionEvent).where(DeletionEvent.occurred_at < since))
            in_window, oldest = conn.execute(
                select(
                    func.coalesce(func.sum(DeletionEvent.rows), 0),
                    func.min(DeletionEvent.occurred_at),
                ).where(DeletionEvent.occurred_at >= since)
            ).one()
            in_window = int(in_window)
            if in_window + rows > self.max_rows:
                refused = True
            else:
                refused = False
                conn.execute(
                    insert(DeletionEvent).values(
                        occurred_at=now, rows=rows, source=source, actor=actor
                    )
                )
        if not refused:
            return
        oldest_at = _aware(oldest) or now
        retry = max(
            1, math.ceil((oldest_at + timedelta(seconds=self.window_seconds) - now).total_seconds())
        )
        if rows > self.max_rows:
            retry = self.window_seconds
        self.alerter.spike(
            {
                "source": source,
                "actor": actor,
                "rows_requested": rows,
                "rows_in_window": in_window,
                "max_rows": self.max_rows,
                "window_seconds": self.window_seconds,
                "at": now.isoformat(),
            }
        )
        raise SpikeRefused(
            f"Deletion spike guard: {in_window} rows were deleted in the last "
            f"{self.window_seconds}s and this would delete {rows} more (limit {self.max_rows}). "
            "Retry later, or remove history through a confirmed retention run.",
            retry_after=retry,
        )


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return as_utc(value)


def check_caps(
    policy: Policy,
    current: PlanPreview,
    table_rows: Mapping[str, int],
    *,
    force: bool,
    reason: str | None,
) -> None:
    """Refuse a plan over ``max_rows_per_run``, or with a delete rule taking more than
    ``max_table_fraction`` of its table unless forced with a reason."""
    total = sum(r.matched for r in current.rules)
    if total > policy.max_rows_per_run:
        raise SafeguardRefused(
            f"The plan affects {total} rows, over max_rows_per_run ({policy.max_rows_per_run}). "
            "Raise max_rows_per_run in the policy, or narrow its rules."
        )
    for rule in current.rules:
        if rule.action != "delete" or not rule.matched:
            continue
        rows = table_rows.get(rule.table, 0)
        if rows and rule.matched / rows > policy.max_table_fraction:
            if not force:
                raise SafeguardRefused(
                    f"Rule {rule.name!r} would delete {rule.matched} of {rows} rows of "
                    f"{rule.table} ({rule.matched / rows:.0%}), more than max_table_fraction "
                    f"({policy.max_table_fraction:.0%}). Confirm with --force and --reason."
                )
            if not (reason and reason.strip()):
                raise SafeguardRefused("--force needs --reason (it is written to the audit log).")
