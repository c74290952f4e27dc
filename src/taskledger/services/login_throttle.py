"""Login throttling: failed logins counted per account and per client address in a sliding window
kept in the database, so every replica shares it. Used by the login route.

An attempt goes through three steps:

1. :meth:`LoginThrottle.begin`, before any password is checked: count the account's and the
   address's failures in the window; at either limit, refuse with :class:`LoginThrottled` (429
   with ``Retry-After``). Otherwise record the attempt as a *pending* failure in the same
   transaction. Pending attempts count like failures, so N concurrent guesses at one account get
   at most ``limit`` password checks between them, on however many replicas.
2. The password is checked (outside any transaction).
3. :meth:`LoginThrottle.failed` turns the pending row into a failure; :meth:`succeeded` drops it
   and takes the account's failures off the account (they keep counting for their addresses);
   :meth:`abandoned` drops it when the check itself could not run.

The check-and-record of step 1 is serialised per account and per address: an advisory
transaction lock on each on PostgreSQL, ``BEGIN IMMEDIATE`` (the database's one write lock) on
SQLite. Expired rows are deleted a bounded batch at a time as the window slides.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from taskledger.errors import ErrorKind, SafeguardRefused
from taskledger.store.models import LoginFailure
from taskledger.store.types import utcnow

#: Namespaces (the first key of ``pg_advisory_xact_lock(int, int)``) for the per-account and
#: per-address locks. The two-key form never collides with the spike guard's one-key lock.
ACCOUNT_LOCK_SPACE = 7_341_002
ADDRESS_LOCK_SPACE = 7_341_003

#: Expired rows deleted per attempt: far more than the one row an attempt adds, so a backlog
#: left by an attack drains quickly while no request pays for all of it.
PRUNE_BATCH = 100

#: A pending row this old belongs to a process that died mid-check (a check waits for a slot
#: for at most 60 s, then takes well under a second): from then on it counts as a failure.
STALE_PENDING = timedelta(seconds=120)

#: Column sizes of ``login_failures``: longer keys are cut. No user's email is over 320
#: characters, so a cut account key can only merge the windows of names that cannot log in.
ACCOUNT_KEY_LENGTH = 320
ADDRESS_KEY_LENGTH = 64


class LoginThrottled(SafeguardRefused):
    """Too many failed logins for the account or from the address; retry later."""

    kind = ErrorKind.THROTTLED

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def account_key(email: str) -> str:
    """The throttle's key for a typed email: stripped and lower-cased, as the user lookup does."""
    return email.strip().lower()[:ACCOUNT_KEY_LENGTH]


def address_key(host: str | None) -> str:
    """The throttle's key for a client address (``"unknown"`` when the server has none)."""
    return (host or "unknown")[:ADDRESS_KEY_LENGTH]


@dataclass(frozen=True)
class LoginAttempt:
    """An admitted attempt: its pending row, to be settled by the outcome."""

    row_id: int
    account: str
    address: str


@dataclass(frozen=True)
class _Refusal:
    retry_after: int
    detail: str


@dataclass
class LoginThrottle:
    """The shared window of failed logins, and its limits."""

    engine: Engine
    max_per_account: int
    max_per_address: int
    window_seconds: int

    def _writer(self) -> Engine:
        return self.engine.execution_options(sqlite_begin="IMMEDIATE")

    def begin(self, email: str, host: str | None, *, now: datetime | None = None) -> LoginAttempt:
        """Admit one login attempt and record it as pending, or refuse it.

        Args:
            email: The email as typed.
            host: The client's address.
            now: The current time (defaults to the clock).

        Raises:
            LoginThrottled: the account or the address is at its limit (nothing is recorded).
        """
        now = now or utcnow()
        since = now - timedelta(seconds=self.window_seconds)
        account, address = account_key(email), address_key(host)
        with self._writer().begin() as conn:
            if conn.dialect.name == "postgresql":
                # Always account first, then address: every attempt locks in the same order.
                _advisory_lock(conn, ACCOUNT_LOCK_SPACE, account)
                _advisory_lock(conn, ADDRESS_LOCK_SPACE, address)
            _prune(conn, since)
            refusals = [
                refusal
                for refusal in (
                    self._refusal(
                        conn,
                        LoginFailure.account == account,
                        self.max_per_account,
                        now,
                        "for this account",
                    ),
                    self._refusal(
                        conn,
                        LoginFailure.address == address,
                        self.max_per_address,
                        now,
                        "from this address",
                    ),
                )
                if refusal is not None
            ]
            if not refusals:
                row_id = conn.execute(
                    insert(LoginFailure)
                    .values(account=account, address=address, occurred_at=now, pending=True)
                    .returning(LoginFailure.id)
                ).scalar_one()
                return LoginAttempt(row_id=row_id, account=account, address=address)
        worst = max(refusals, key=lambda r: r.retry_after)
        raise LoginThrottled(worst.detail, retry_after=worst.retry_after)

    def failed(self, attempt: LoginAttempt) -> None:
        """The password was wrong (or the account unknown or inactive): keep it as a failure."""
        with self._writer().begin() as conn:
            conn.execute(
                update(LoginFailure).where(LoginFailure.id == attempt.row_id).values(pending=False)
            )

    def succeeded(self, attempt: LoginAttempt) -> None:
        """The login worked: drop this attempt and clear the account's failures.

        The cleared rows lose their account but keep their address, so a success clears the
        account's count and not the address's.
        """
        with self._writer().begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two successes on one account would otherwise update each other's rows in
                # opposite orders (a deadlock).
                _advisory_lock(conn, ACCOUNT_LOCK_SPACE, attempt.account)
            conn.execute(delete(LoginFailure).where(LoginFailure.id == attempt.row_id))
            conn.execute(
                update(LoginFailure)
                .where(LoginFailure.account == attempt.account)
                .values(account=None)
            )

    def abandoned(self, attempt: LoginAttempt) -> None:
        """The password could not be checked (server busy, an error): forget the attempt."""
        with self._writer().begin() as conn:
            conn.execute(delete(LoginFailure).where(LoginFailure.id == attempt.row_id))

    def _refusal(
        self,
        conn: Connection,
        key: ColumnElement[bool],
        limit: int,
        now: datetime,
        whose: str,
    ) -> _Refusal | None:
        """Why an attempt under ``key`` must wait, or None when it may go ahead."""
        in_window = and_(
            key, LoginFailure.occurred_at >= now - timedelta(seconds=self.window_seconds)
        )
        counted = _count(conn, in_window)
        if counted < limit:
            return None
        settled = and_(
            in_window,
            or_(LoginFailure.pending.is_(False), LoginFailure.occurred_at < now - STALE_PENDING),
        )
        failures = _count(conn, settled)
        if failures < limit:
            # Attempts still being checked make up the count; they finish within seconds.
            return _Refusal(1, f"Other login attempts {whose} are in progress; retry in a moment.")
        # Enough failures must leave the window to get back under the limit.
        freeing = conn.execute(
            select(LoginFailure.occurred_at)
            .where(settled)
            .order_by(LoginFailure.occurred_at, LoginFailure.id)
            .offset(failures - limit)
            .limit(1)
        ).scalar_one()
        retry = max(
            1,
            math.ceil((freeing + timedelta(seconds=self.window_seconds) - now).total_seconds()),
        )
        return _Refusal(
            retry,
            f"Too many failed logins {whose}: {failures} in the last {self.window_seconds} s "
            f"(limit {limit}). Retry after {retry} s.",
        )


def _count(conn: Connection, where: ColumnElement[bool]) -> int:
    counted = conn.execute(select(func.count()).select_from(LoginFailure).where(where))
    return int(counted.scalar_one())


def _prune(conn: Connection, since: datetime) -> None:
    # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): concurrent attempts prune
    # different rows instead of waiting on, or deadlocking over, the same ones.
    expired = (
        select(LoginFailure.id)
        .where(LoginFailure.occurred_at < since)
        .order_by(LoginFailure.occurred_at)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    conn.execute(delete(LoginFailure).where(LoginFailure.id.in_(expired.scalar_subquery())))


def _advisory_lock(conn: Connection, space: int, key: str) -> None:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": space, "key": digest}
    )
