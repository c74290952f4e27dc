"""The single-runner lock: one retention execution at a time, across processes and replicas.

PostgreSQL: a session-level advisory lock, released by the server if the holder dies; who holds
it is also written to ``retention_leases`` for the refusal message. SQLite: a lease row with an
expiry, renewed by a background thread while the run lasts, so a crashed holder's lease lapses;
a holder on this very host whose process is gone is taken over at once, without waiting.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from taskledger.errors import SafeguardRefused
from taskledger.store.engine import for_writing
from taskledger.store.models import RetentionLease
from taskledger.store.types import as_utc, utcnow

LOCK_NAME = "retention"
ADVISORY_KEY = 7_341_002
LEASE = timedelta(minutes=2)


class LockHeld(SafeguardRefused):
    """Another retention run holds the lock."""

    def __init__(self, holder: str | None, since: datetime | None) -> None:
        who = holder or "another process"
        when = f" since {since.isoformat(timespec='seconds')}" if since else ""
        super().__init__(f"Another retention run holds the lock: {who}{when}.")
        self.holder = holder


def holder_identity() -> str:
    """Who this process is, in the lock: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


_IDENTITY = re.compile(r"(?:^|\()(?P<host>[^\s():]+):(?P<pid>\d+):[0-9a-f]+\)?$")


def holder_is_gone(holder: str | None) -> bool:
    """Whether ``holder`` names a process on this host that no longer exists.

    Only a certainty counts: another host, an unreadable identity, or a live process (even one
    that reused the pid) all answer ``False``, and the lease then runs out on its own.
    """
    match = _IDENTITY.search(holder or "")
    if match is None or match["host"] != socket.gethostname():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, but belongs to someone else
    return False


def _record(conn: Connection, holder: str | None, now: datetime, expires: datetime | None) -> None:
    updated = conn.execute(
        update(RetentionLease)
        .where(RetentionLease.name == LOCK_NAME)
        .values(holder=holder, acquired_at=now if holder else None, expires_at=expires)
    ).rowcount
    if not updated:
        conn.execute(
            RetentionLease.__table__.insert().values(  # type: ignore[attr-defined]
                name=LOCK_NAME, holder=holder, acquired_at=now, expires_at=expires
            )
        )


def _current(conn: Connection) -> tuple[str | None, datetime | None]:
    row = conn.execute(
        select(RetentionLease.holder, RetentionLease.acquired_at).where(
            RetentionLease.name == LOCK_NAME
        )
    ).first()
    if row is None:
        return None, None
    return row[0], as_utc(row[1]) if row[1] else None


@contextmanager
def runner_lock(engine: Engine, holder: str | None = None) -> Iterator[str]:
    """Hold the retention lock for the ``with`` block, or raise :class:`LockHeld` at once."""
    holder = holder or holder_identity()
    if engine.dialect.name == "postgresql":
        with _advisory(engine, holder):
            yield holder
        return
    with _lease(engine, holder):
        yield holder


@contextmanager
def _advisory(engine: Engine, holder: str) -> Iterator[None]:
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        conn.commit()
        if not got:
            who, since = _current(conn)
            conn.rollback()
            raise LockHeld(who, since)
        try:
            with for_writing(engine).begin() as writer:
                _record(writer, holder, utcnow(), None)
            yield
        finally:
            with for_writing(engine).begin() as writer:
                writer.execute(
                    update(RetentionLease)
                    .where(RetentionLease.holder == holder)
                    .values(holder=None, acquired_at=None)
                )
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            conn.commit()


def _try_lease(engine: Engine, holder: str) -> bool:
    now = utcnow()
    bind = for_writing(engine)
    try:
        with bind.begin() as conn:
            taken = conn.execute(
                update(RetentionLease)
                .where(
                    RetentionLease.name == LOCK_NAME,
                    (RetentionLease.holder.is_(None)) | (RetentionLease.expires_at < now),
                )
                .values(holder=holder, acquired_at=now, expires_at=now + LEASE)
            ).rowcount
            if taken:
                return True
            current = conn.execute(
                select(RetentionLease.holder).where(RetentionLease.name == LOCK_NAME)
            ).first()
            if current is not None:
                if not holder_is_gone(current[0]):
                    return False
                # The holder was killed on this host: its lease is void, not merely waiting.
                return bool(
                    conn.execute(
                        update(RetentionLease)
                        .where(
                            RetentionLease.name == LOCK_NAME, RetentionLease.holder == current[0]
                        )
                        .values(holder=holder, acquired_at=now, expires_at=now + LEASE)
                    ).rowcount
                )
            conn.execute(
                RetentionLease.__table__.insert().values(  # type: ignore[attr-defined]
                    name=LOCK_NAME, holder=holder, acquired_at=now, expires_at=now + LEASE
                )
            )
            return True
    except IntegrityError:
        return False


@contextmanager
def _lease(engine: Engine, holder: str) -> Iterator[None]:
    if not _try_lease(engine, holder):
        with engine.connect() as conn:
            raise LockHeld(*_current(conn))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE.total_seconds() / 3):
            with for_writing(engine).begin() as conn:
                conn.execute(
                    update(RetentionLease)
                    .where(RetentionLease.name == LOCK_NAME, RetentionLease.holder == holder)
                    .values(expires_at=utcnow() + LEASE)
                )

    renewer = threading.Thread(target=renew, name="taskledger-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with for_writing(engine).begin() as conn:
            conn.execute(
                update(RetentionLease)
                .where(RetentionLease.name == LOCK_NAME, RetentionLease.holder == holder)
                .values(holder=None, acquired_at=None, expires_at=None)
            )
