"""Safeguards: the deletion-spike guard, and the caps every execution is checked against.

The spike guard counts deletions outside retention runs in a sliding window kept in the
database, so all replicas share it. An API record delete that would take the window over the
limit is refused with 429 and ``Retry-After`` (:meth:`SpikeGuard.admit`), and an alert goes out.
A prune through the seed endpoint (or ``taskledger runs prune``) is an admin-confirmed retention
run: bounded by its caps (:func:`check_prune_caps`), never refused by the window, but counted in
it (:meth:`SpikeGuard.record`), so the deletes that follow it are held back, and alerting when it
takes the window over the limit. The window is checked and recorded in one short serialised
transaction (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two replicas
cannot both squeeze past the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, text

from taskledger.errors import ErrorKind, SafeguardRefused
from taskledger.retention.plan.preview import PlanPreview
from taskledger.retention.policy.rules import Policy
from taskledger.retention.safeguards.alerts import Alerter
from taskledger.store.models import DeletionEvent
from taskledger.store.types import as_utc_or_none, utcnow

#: Arbitrary but fixed: the advisory lock that serialises spike-window updates on PostgreSQL.
SPIKE_LOCK_KEY = 7_341_001


class SpikeRefused(SafeguardRefused):
    """Too many deletions in the window; retry later."""

    kind = ErrorKind.THROTTLED

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


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
        in_window, oldest, admitted = self._count(rows, source, actor, now, refuse=True)
        if admitted:
            return
        oldest_at = as_utc_or_none(oldest) or now
        retry = max(
            1, math.ceil((oldest_at + timedelta(seconds=self.window_seconds) - now).total_seconds())
        )
        if rows > self.max_rows:
            retry = self.window_seconds
        self._alert(source, actor, rows, in_window, now, refused=True)
        raise SpikeRefused(
            f"Deletion spike guard: {in_window} rows were deleted in the last "
            f"{self.window_seconds}s and this would delete {rows} more (limit {self.max_rows}). "
            "Retry later, or remove history through a confirmed retention run.",
            retry_after=retry,
        )

    def record(self, rows: int, *, source: str, actor: str, now: datetime | None = None) -> bool:
        """Count ``rows`` deletions of a confirmed prune in the window, whatever it holds, and
        raise the alert when they leave it over the limit. Returns whether it alerted."""
        now = now or utcnow()
        in_window, _, _ = self._count(rows, source, actor, now, refuse=False)
        if in_window + rows <= self.max_rows:
            return False
        self._alert(source, actor, rows, in_window, now, refused=False)
        return True

    def _count(
        self, rows: int, source: str, actor: str, now: datetime, *, refuse: bool
    ) -> tuple[int, object, bool]:
        """The rows in the window before ``rows``, its oldest event, and whether ``rows`` were
        recorded (always, unless ``refuse`` and they would take it over the limit)."""
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
            if refuse and in_window + rows > self.max_rows:
                return in_window, oldest, False
            conn.execute(
                insert(DeletionEvent).values(occurred_at=now, rows=rows, source=source, actor=actor)
            )
        return in_window, oldest, True

    def _alert(
        self, source: str, actor: str, rows: int, in_window: int, now: datetime, *, refused: bool
    ) -> None:
        self.alerter.spike(
            {
                "source": source,
                "actor": actor,
                "rows_requested": rows,
                "rows_in_window": in_window,
                "max_rows": self.max_rows,
                "window_seconds": self.window_seconds,
                "refused": refused,
                "at": now.isoformat(),
            }
        )


def fraction_cap_lifted(*, force: bool, reason: str | None) -> bool:
    """Whether a request lifts ``max_table_fraction``: forced, with a reason for the audit."""
    return force and bool(reason and reason.strip())


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
            if not fraction_cap_lifted(force=force, reason=reason):
                raise SafeguardRefused("--force needs --reason (it is written to the audit log).")


class CapRefused(SafeguardRefused):
    """A prune over ``max_rows_per_run`` or ``max_table_fraction`` of the policy in force."""


def check_prune_caps(
    policy: Policy,
    *,
    rows: int,
    table_rows: int,
    force: bool,
    reason: str | None,
    command: str,
) -> None:
    """Refuse a prune of ``rows`` of a table of ``table_rows`` over either cap of ``policy``,
    unless forced with a reason; the refusal names the cap and ``command``, the command line
    that can force it (``--force`` lifts both caps, for this prune only)."""
    if force:
        if not fraction_cap_lifted(force=force, reason=reason):
            raise CapRefused("--force needs --reason (it is written to the audit log).")
        return
    how = f"To prune anyway, run `{command}` (it previews the count and asks first)."
    if rows > policy.max_rows_per_run:
        raise CapRefused(
            f"The prune would delete {rows} runs, over max_rows_per_run "
            f"({policy.max_rows_per_run}) of the policy in force ({policy.name!r}). {how}"
        )
    if table_rows and rows / table_rows > policy.max_table_fraction:
        raise CapRefused(
            f"The prune would delete {rows} of {table_rows} runs ({rows / table_rows:.0%}), "
            f"more than max_table_fraction ({policy.max_table_fraction:.0%}) of the policy in "
            f"force ({policy.name!r}). {how}"
        )
