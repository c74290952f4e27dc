"""Authentication: password login, JWTs, and turning request credentials into a Principal.

API keys are handled in :mod:`taskledger.services.api_keys`; this module covers users and the
admin key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskledger.errors import AuthenticationError, PermissionDenied
from taskledger.services.access import ADMIN_KEY_PRINCIPAL, Principal, PrincipalKind
from taskledger.services.passwords import hash_password, verify_password
from taskledger.store.models import User
from taskledger.store.types import utcnow

ALGORITHM = "HS256"
LOGIN_FAILED = "Incorrect email or password."


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so a miss costs as much as a wrong password.
    return hash_password("not-a-real-password")


def _password_fingerprint(password_hash: str) -> str:
    # Tokens carry this; changing the password changes it and so invalidates older tokens.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def find_login_user(*, session: Session, email: str) -> User | None:
    """The user an email typed at login names (case and surrounding spaces ignored), if any."""
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def check_password(user: User | None, password: str) -> User:
    """``user``, if it is active and ``password`` is its password; one error for every failure.

    Call it outside any transaction: the check can wait for a password-check slot, and should
    not hold a database connection meanwhile.

    Raises:
        AuthenticationError: unknown user, wrong password or inactive user, all alike.
        PasswordCheckBusy: no password-check slot came free in time.
    """
    if user is None:
        verify_password(_dummy_hash(), password)
        raise AuthenticationError(LOGIN_FAILED)
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise AuthenticationError(LOGIN_FAILED)
    return user


def issue_token(user: User, *, secret: str, expire_minutes: int) -> tuple[str, int]:
    """A signed access token for ``user`` and its lifetime in seconds."""
    now = utcnow()
    lifetime = timedelta(minutes=expire_minutes)
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + lifetime,
        "typ": "access",
        "pwd": _password_fingerprint(user.password_hash),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), int(lifetime.total_seconds())


def principal_from_token(*, session: Session, token: str, secret: str) -> Principal:
    """The user a JWT names, if it is valid, unexpired, current and the user is active."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "iat"]}
        )
        user_id = uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise AuthenticationError("Invalid or expired token.") from exc
    if claims.get("typ") != "access":
        raise AuthenticationError("Invalid or expired token.")
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise AuthenticationError("Invalid or expired token.")
    if not hmac.compare_digest(
        str(claims.get("pwd", "")), _password_fingerprint(user.password_hash)
    ):
        raise AuthenticationError("Invalid or expired token.")
    return Principal(
        kind=PrincipalKind.USER,
        user_id=user.id,
        email=user.email,
        is_superuser=user.is_superuser,
    )


def principal_from_admin_key(configured: str | None, provided: str) -> Principal:
    """The admin principal, if ``provided`` equals the configured key (compared in constant time).

    An unset key refuses every request: fail closed.
    """
    if not configured:
        raise PermissionDenied("The admin key is not configured on this server.")
    if not hmac.compare_digest(provided.encode(), configured.encode()):
        raise PermissionDenied("Invalid admin key.")
    return ADMIN_KEY_PRINCIPAL
