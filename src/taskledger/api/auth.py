"""``/api/v1/auth``: log in with email and password, and ask who you are.

Login runs through the login throttle (failures per account and per address, in the database)
before any password is checked, and the check itself through the process's password-check slots.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from taskledger.api.deps import PrincipalDep, SessionDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.errors import AuthenticationError
from taskledger.schemas.auth import KeyIdentity, Me, Token
from taskledger.schemas.base import ErrorMessage
from taskledger.schemas.users import UserRead
from taskledger.services import auth
from taskledger.services.access import PrincipalKind
from taskledger.store.models import ApiKey, User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=LedgerRoute)

RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}


@router.post(
    "/token",
    response_model=Token,
    summary="Log in: exchange email and password for a bearer token",
    responses={
        401: {"model": ErrorMessage, "description": "Wrong email or password, or an inactive user"},
        429: {
            "model": ErrorMessage,
            "description": (
                "Too many failed logins for this account or from this address; retry after "
                "`Retry-After` seconds. No password was checked."
            ),
            "headers": {"Retry-After": RETRY_AFTER_HEADER},
        },
        503: {
            "model": ErrorMessage,
            "description": (
                "Every password-check slot stayed busy, or the database is unavailable; retry "
                "after `Retry-After` seconds."
            ),
            "headers": {"Retry-After": RETRY_AFTER_HEADER},
        },
    },
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    state: StateDep,
) -> Token:
    throttle = state.login_throttle
    # The direct peer, or what uvicorn's proxy-headers handling put there (docs/auth.md).
    attempt = throttle.begin(form.username, request.client.host if request.client else None)
    try:
        with session.begin():
            candidate = auth.find_login_user(session=session, email=form.username)
        # Outside the transaction: the check may wait for a slot, holding no connection.
        user = auth.check_password(candidate, form.password)
    except AuthenticationError:
        throttle.failed(attempt)
        raise
    except BaseException:
        throttle.abandoned(attempt)
        raise
    throttle.succeeded(attempt)
    token, expires_in = auth.issue_token(
        user, secret=state.secret_key, expire_minutes=state.settings.auth.jwt_expire_minutes
    )
    return Token(access_token=token, expires_in=expires_in)


@router.get("/me", response_model=Me, summary="Who is calling")
def me(principal: PrincipalDep, session: SessionDep) -> Me:
    with session.begin():
        if principal.kind is PrincipalKind.USER:
            user = session.get(User, principal.user_id)
            return Me(kind=principal.kind.value, user=UserRead.model_validate(user))
        if principal.kind is PrincipalKind.API_KEY:
            key = session.get(ApiKey, principal.key_id)
            assert key is not None
            identity = KeyIdentity(
                id=key.id,
                name=key.name,
                prefix=key.prefix,
                project_id=key.project_id,
                agent_id=key.agent_id,
                scopes=list(key.scopes),
            )
            return Me(kind=principal.kind.value, key=identity)
    return Me(kind=principal.kind.value)
