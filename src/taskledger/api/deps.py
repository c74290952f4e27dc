"""FastAPI dependencies as ``Annotated`` aliases, shared by every router.

``PrincipalDep`` resolves who is calling, from exactly one of: ``X-Admin-Key`` (the admin key),
``Authorization: Bearer tl_...`` or ``X-API-Key`` (a project API key), ``Authorization: Bearer
<jwt>`` (a user). Credentials in the query string are never looked at.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taskledger.errors import AuthenticationError
from taskledger.schemas.base import PROJECT_QUERY
from taskledger.schemas.limits import MAX_INT64, QueryFlag, UtcDatetime
from taskledger.services import api_keys, auth
from taskledger.services.access import Principal
from taskledger.services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from taskledger.state import AppState

log = logging.getLogger(__name__)

bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="A user's JWT from `/api/v1/auth/token`, or a project API key `tl_...`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="A project API key `tl_...`.",
)
#: The name of the admin key's security scheme in the OpenAPI document.
ADMIN_KEY_SCHEME = "AdminKey"
admin_key_scheme = APIKeyHeader(
    name="X-Admin-Key",
    scheme_name=ADMIN_KEY_SCHEME,
    auto_error=False,
    description="The server's admin key (TASKLEDGER_ADMIN_API_KEY), for admin routes.",
)


def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request``."""
    state: AppState = request.app.state.ledger
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(request: Request, state: StateDep) -> Iterator[Session]:
    """A session for one request; the route opens ``with session.begin():`` itself.

    Requests that may write get a session whose transaction takes SQLite's write lock when it
    begins, so that concurrent writers wait for each other instead of failing; reads do not.
    """
    with state.sessions_for(request.method)() as session:
        yield session


def get_principal(
    state: StateDep,
    background: BackgroundTasks,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    x_api_key: Annotated[str | None, Depends(api_key_scheme)],
    x_admin_key: Annotated[str | None, Depends(admin_key_scheme)],
) -> Principal:
    """Who is calling; 401 when nobody is, 403 for a wrong or unconfigured admin key."""
    if x_admin_key is not None:
        configured = state.settings.auth.admin_api_key
        return auth.principal_from_admin_key(
            configured.get_secret_value() if configured else None, x_admin_key
        )
    if bearer and not api_keys.looks_like_api_key(bearer):
        with state.read_session_factory.begin() as session:
            return auth.principal_from_token(session=session, token=bearer, secret=state.secret_key)
    raw_key = bearer or x_api_key
    if not raw_key:
        raise AuthenticationError("Not authenticated.")
    # Read-only, so that reads by key holders stay concurrent. The key's last use is written
    # after the response, in a transaction of its own, so a read never waits for the write lock.
    with state.read_session_factory.begin() as session:
        principal, stale = api_keys.principal_from_key(session=session, raw=raw_key)
    if stale:
        background.add_task(_touch_key, state, principal)
    return principal


def _touch_key(state: AppState, principal: Principal) -> None:
    """Record a key's use; bookkeeping, so a database that cannot take it now only logs."""
    try:
        with state.session_factory.begin() as session:
            api_keys.touch_key(session=session, principal=principal)
    except OperationalError as exc:
        log.warning("could not record the use of API key %s: %s", principal.key_prefix, exc)


SessionDep = Annotated[Session, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
LimitQuery = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"Page size, {DEFAULT_LIMIT} by default, {MAX_LIMIT} at most.",
    ),
]
CursorQuery = Annotated[
    str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")
]
#: A ``pattern`` for free-text query filters: NUL cannot be compared on PostgreSQL.
NO_NUL = r"^[^\x00]*$"
ProjectQuery = Annotated[
    uuid.UUID | None,
    Query(description=PROJECT_QUERY),
]
#: An integer key in a path (runs, connections, holds): positive, within signed 64 bits.
IntId = Annotated[int, Path(ge=1, le=MAX_INT64, description="An integer id.")]
#: A timestamp filter in a query: ISO 8601, UTC when it has no offset.
TimestampQuery = Annotated[UtcDatetime | None, Query()]
#: A flag in a query: `true` or `false`.
FlagQuery = Annotated[QueryFlag, Query()]
#: How many rows an export stops after (none by default).
ExportLimit = Annotated[
    int | None, Query(ge=1, le=MAX_INT64, description="Stop after this many rows.")
]


def streamed(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that streams ``media_type``: its 200 is text, not JSON."""
    return {
        200: {
            "description": f"{what}, streamed; one that fails midway is broken off unfinished",
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }
