"""Web UI logins: a session per browser, kept server-side so that logging out (or deactivating
the user, or changing the password) ends it at once.

The cookie carries a random secret; the database keeps only its SHA-256, with the session's
CSRF token and its expiry. Used by :mod:`taskledger.web`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from taskledger.services.access import Principal, PrincipalKind
from taskledger.store.models import User, WebSession
from taskledger.store.types import utcnow


@dataclass(frozen=True)
class WebLogin:
    """Who a valid session cookie belongs to, and the CSRF token its forms must carry."""

    principal: Principal
    csrf_token: str


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def open_session(*, session: Session, user: User, lifetime: timedelta) -> tuple[str, WebLogin]:
    """Start a session for ``user``: the cookie's secret (shown only now) and the login.

    Expired sessions of every user are removed on the way, so the table stays small."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    raw = secrets.token_urlsafe(32)
    record = WebSession(
        token_hash=_digest(raw),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(record)
    session.flush()
    return raw, WebLogin(_principal(user), record.csrf_token)


def resolve_session(*, session: Session, raw: str) -> WebLogin | None:
    """The login a cookie's secret names, if it is unexpired and its user active and
    unchanged since (a new password or role ends every session begun before it)."""
    row = session.execute(
        select(
            WebSession.csrf_token,
            WebSession.created_at,
            WebSession.expires_at,
            User.id,
            User.email,
            User.is_superuser,
            User.is_active,
            User.updated_at,
        )
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _digest(raw))
    ).first()
    if row is None:
        return None
    if row.expires_at <= utcnow() or not row.is_active or row.updated_at > row.created_at:
        return None
    principal = Principal(
        kind=PrincipalKind.USER, user_id=row.id, email=row.email, is_superuser=row.is_superuser
    )
    return WebLogin(principal, row.csrf_token)


def close_session(*, session: Session, raw: str) -> None:
    """End the session a cookie's secret names (nothing happens when there is none)."""
    session.execute(delete(WebSession).where(WebSession.token_hash == _digest(raw)))


def _principal(user: User) -> Principal:
    return Principal(
        kind=PrincipalKind.USER,
        user_id=user.id,
        email=user.email,
        is_superuser=user.is_superuser,
    )
