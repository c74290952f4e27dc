"""``/api/v1/auth``: log in with email and password, and ask who you are."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from taskledger.api.deps import PrincipalDep, SessionDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.schemas.auth import KeyIdentity, Me, Token
from taskledger.schemas.users import UserRead
from taskledger.services import auth
from taskledger.services.access import PrincipalKind
from taskledger.store.models import ApiKey, User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=LedgerRoute)


@router.post(
    "/token",
    response_model=Token,
    summary="Log in: exchange email and password for a bearer token",
    responses={401: {"description": "Wrong email or password, or an inactive user"}},
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, state: StateDep
) -> Token:
    with session.begin():
        user = auth.authenticate_password(session, form.username, form.password)
        token, expires_in = auth.issue_token(
            user, secret=state.secret_key, expire_minutes=state.settings.jwt_expire_minutes
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
