"""``/api/v1/users``: user management, for superusers."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, SessionDep
from taskledger.api.routing import LedgerRoute
from taskledger.schemas.base import ErrorMessage
from taskledger.schemas.users import UserCreate, UserPage, UserRead, UserUpdate
from taskledger.services import users
from taskledger.services.access import require_superuser
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.services.passwords import hash_password

router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=LedgerRoute)

#: Hashing a password takes a password-check slot (taskledger.services.passwords).
PASSWORD_BUSY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorMessage,
        "description": "Every password-check slot stayed busy; retry after `Retry-After`.",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    }
}


@router.post(
    "", response_model=UserRead, status_code=status.HTTP_201_CREATED, responses=PASSWORD_BUSY
)
def create_user(body: UserCreate, principal: PrincipalDep, session: SessionDep) -> UserRead:
    require_superuser(principal)
    hashed = hash_password(body.password)  # before the write transaction: it may wait a while
    with session.begin():
        user = users.create_user(
            session=session,
            email=body.email,
            password=body.password,
            is_superuser=body.is_superuser,
            password_hash=hashed,
        )
        return UserRead.model_validate(user)


@router.get("", response_model=UserPage)
def list_users(
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> UserPage:
    require_superuser(principal)
    with session.begin():
        rows, next_cursor = users.list_users(session=session, limit=limit, cursor=cursor)
        return UserPage(items=[UserRead.model_validate(u) for u in rows], next_cursor=next_cursor)


@router.get("/{user_id}", response_model=UserRead)
def get_user(user_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> UserRead:
    require_superuser(principal)
    with session.begin():
        return UserRead.model_validate(users.get_user(session=session, user_id=user_id))


@router.patch("/{user_id}", response_model=UserRead, responses=PASSWORD_BUSY)
def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: PrincipalDep, session: SessionDep
) -> UserRead:
    """Deactivate or reactivate, promote or demote, or reset the password."""
    require_superuser(principal)
    hashed = hash_password(body.password) if body.password is not None else None
    with session.begin():
        user = users.update_user(
            session=session, user_id=user_id, changes=body, password_hash=hashed
        )
        return UserRead.model_validate(user)
