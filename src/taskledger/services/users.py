"""User accounts: create, list, change. Managing users is for superusers (checked by callers)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskledger.errors import ConflictError, NotFoundError
from taskledger.schemas.users import UserUpdate
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.passwords import hash_password
from taskledger.store.models import User

USERS_KEYSET = Keyset("users", (User.created_at, User.id), descending=False)


def normalise_email(email: str) -> str:
    """Emails are compared case-insensitively and stored lower-case."""
    return email.strip().lower()


def find_user(*, session: Session, email: str) -> User | None:
    """The user with ``email``, if any."""
    return session.scalar(select(User).where(func.lower(User.email) == normalise_email(email)))


def create_user(
    *,
    session: Session,
    email: str,
    password: str,
    is_superuser: bool = False,
    password_hash: str | None = None,
) -> User:
    """Create an active user; 409 when the email is taken.

    ``password_hash``, when given, is ``password`` hashed already: a caller holding a write
    transaction hashes first, so that the slow hash never runs under the database's lock.
    """
    if find_user(session=session, email=email) is not None:
        raise ConflictError(f"A user with email {normalise_email(email)!r} already exists.")
    user = User(
        email=normalise_email(email),
        password_hash=password_hash or hash_password(password),
        is_superuser=is_superuser,
        is_active=True,
    )
    session.add(user)
    session.flush()
    return user


def get_user(*, session: Session, user_id: uuid.UUID) -> User:
    """The user with ``user_id``, or 404."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError("User not found.")
    return user


def list_users(
    *, session: Session, limit: int, cursor: str | None
) -> tuple[list[User], str | None]:
    """One page of users, oldest first."""
    return paginate(
        session=session,
        stmt=select(User),
        keyset=USERS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={},
    )


def update_user(
    *,
    session: Session,
    user_id: uuid.UUID,
    changes: UserUpdate,
    password_hash: str | None = None,
) -> User:
    """Deactivate, reactivate, promote, demote or reset the password of a user.

    The last active superuser can be neither deactivated nor demoted: that would lock everyone
    out of user management.
    """
    user = get_user(session=session, user_id=user_id)
    losing_super = (
        user.is_superuser
        and user.is_active
        and (changes.is_active is False or changes.is_superuser is False)
    )
    if losing_super:
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_superuser.is_(True), User.is_active.is_(True), User.id != user.id)
        )
        if not others:
            raise ConflictError("This is the last active superuser; promote another user first.")
    if changes.is_active is not None:
        user.is_active = changes.is_active
    if changes.is_superuser is not None:
        user.is_superuser = changes.is_superuser
    if changes.password is not None:
        user.password_hash = password_hash or hash_password(changes.password)
    session.flush()
    return user
