"""The single-runner lock: one retention execution at a time, across processes and replicas.

PostgreSQL: a session-level advisory lock, released by the server if the holder dies; who holds
it is also written to ``retention_leases`` for the refusal message. SQLite: a lease row with an
expiry, renewed by a background thread while the run lasts, so a crashed holder's lease lapses;
a holder on this very host whose process is gone is taken over at once, without waiting.

Taking the lock also settles the audit log: the work's own row gets the holder's name, and the
rows a dead holder left ``running`` become ``interrupted``. A holder is known dead when the lock
is free but ``retention_leases`` still names it (PostgreSQL: it never cleared the row, and the
server released its advisory lock when its session ended), or when its lease ran out or its
process on this host is gone (SQLite). Both happen in the transaction that takes the lock.
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
from taskledger.retention.audit import mark_interrupted, set_holder
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


def _settle(
    conn: Connection, holder: str, displaced: str | None, audit_id: int | None, now: datetime
) -> None:
    """Close a displaced dead holder's rows as interrupted; name the new holder on its row."""
    if displaced is not None and displaced != holder:
        mark_interrupted(conn, displaced, by=holder, now=now)
    if audit_id is not None:
        set_holder(conn, audit_id, holder)


@contextmanager
def runner_lock(
    engine: Engine, holder: str | None = None, *, audit_id: int | None = None
) -> Iterator[str]:
    """Hold the retention lock for the ``with`` block, or raise :class:`LockHeld` at once.

    Args:
        engine: The database.
        holder: Who takes it, as the refusal message and the audit log name it.
        audit_id: The audit row of the work done under the lock; it records ``holder``.
    """
    holder = holder or holder_identity()
    if engine.dialect.name == "postgresql":
        with _advisory(engine, holder, audit_id):
            yield holder
        return
    with _lease(engine, holder, audit_id):
        yield holder


@contextmanager
def _advisory(engine: Engine, holder: str, audit_id: int | None) -> Iterator[None]:
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        conn.commit()
        if not got:
            who, since = _current(conn)
            conn.rollback()
            raise LockHeld(who, since)
        try:
            with for_writing(engine).begin() as writer:
                # Holding the lock, a holder still named here is one that died holding it.
                displaced, _ = _current(writer)
                now = utcnow()
                _record(writer, holder, now, None)
                _settle(writer, holder, displaced, audit_id, now)
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


def _try_lease(engine: Engine, holder: str, audit_id: int | None) -> bool:
    now = utcnow()
    bind = for_writing(engine)
    try:
        with bind.begin() as conn:
            current = conn.execute(
                select(RetentionLease.holder, RetentionLease.expires_at).where(
                    RetentionLease.name == LOCK_NAME
                )
            ).first()
            displaced = None
            if current is None:
                conn.execute(
                    RetentionLease.__table__.insert().values(  # type: ignore[attr-defined]
                        name=LOCK_NAME, holder=holder, acquired_at=now, expires_at=now + LEASE
                    )
                )
            else:
                previous, expires = current
                if previous is not None:
                    lapsed = expires is not None and as_utc(expires) < now
                    # A holder killed on this host: its lease is void, not merely waiting.
                    if not lapsed and not holder_is_gone(previous):
                        return False
                    displaced = previous
                conn.execute(
                    update(RetentionLease)
                    .where(RetentionLease.name == LOCK_NAME)
                    .values(holder=holder, acquired_at=now, expires_at=now + LEASE)
                )
            _settle(conn, holder, displaced, audit_id, now)
            return True
    except IntegrityError:
        return False


@contextmanager
def _lease(engine: Engine, holder: str, audit_id: int | None) -> Iterator[None]:
    if not _try_lease(engine, holder, audit_id):
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
