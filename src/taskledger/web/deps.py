"""The web UI's dependencies, as ``Annotated`` aliases: the app state, a session, the login
behind the session cookie, and the CSRF check every state-changing request passes.

A login is a server-side session (:mod:`taskledger.services.web_sessions`) named by an
HttpOnly, ``SameSite=Lax`` cookie. Every POST carries the session's CSRF token, as the form
field ``csrf_token`` or the header ``X-CSRF-Token`` (htmx requests); before login, the token is
the one of the ``taskledger_csrf`` cookie (double submit), so the login form is covered too.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from taskledger.enums import Scope
from taskledger.errors import AuthenticationError, PermissionDenied
from taskledger.services.access import Principal, get_project_for, visible_projects
from taskledger.services.web_sessions import WebLogin, resolve_session
from taskledger.state import READ_METHODS, AppState
from taskledger.store.models import Project

#: The cookie that names a login.
SESSION_COOKIE = "taskledger_session"
#: The cookie that carries the CSRF token of a browser that has not logged in yet.
CSRF_COOKIE = "taskledger_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = "The CSRF token is missing or wrong: reload the page and try again."


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ledger
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(request: Request, state: StateDep) -> Iterator[Session]:
    """A session for one request; the view opens ``with session.begin():`` itself."""
    with state.sessions_for(request.method)() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _resolve_login(request: Request, session: Session) -> WebLogin | None:
    raw = request.cookies.get(SESSION_COOKIE)
    login = resolve_session(session=session, raw=raw) if raw else None
    request.state.login = login
    return login


def get_login(request: Request, state: StateDep) -> WebLogin | None:
    """The login of the request's session cookie, if it is valid, read once per request (kept
    on ``request.state``; :func:`choose_project` reads it in its own transaction)."""
    if hasattr(request.state, "login"):
        cached: WebLogin | None = request.state.login
        return cached
    if not request.cookies.get(SESSION_COOKIE):
        request.state.login = None
        return None
    with state.read_session_factory.begin() as session:
        return _resolve_login(request, session)


MaybeLoginDep = Annotated[WebLogin | None, Depends(get_login)]


def require_login(login: MaybeLoginDep) -> WebLogin:
    """The login; without one, the page answers 401, which sends the browser to log in."""
    if login is None:
        raise AuthenticationError("Log in to see this page.")
    return login


LoginDep = Annotated[WebLogin, Depends(require_login)]


def get_principal(login: LoginDep) -> Principal:
    """The logged-in user, as the services know callers."""
    return login.principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def csrf_token(request: Request) -> str:
    """The token this request's forms carry: the session's, or the pre-login cookie's (a new
    one when the browser has none yet; :class:`taskledger.web.pages.Pages` sets the cookie)."""
    login: WebLogin | None = getattr(request.state, "login", None)
    if login is not None:
        return login.csrf_token
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request, state: StateDep) -> None:
    """Refuse (403) a state-changing request whose CSRF token is missing or wrong."""
    if request.method in READ_METHODS:
        return
    login = await run_in_threadpool(get_login, request, state)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = login.csrf_token if login is not None else request.cookies.get(CSRF_COOKIE)
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PermissionDenied(CSRF_REFUSED)


@dataclass(frozen=True)
class ProjectRef:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class ProjectChoice:
    """The projects the user may see (for the switcher) and the one the page shows."""

    projects: list[ProjectRef]
    current: ProjectRef | None


#: How many projects the switcher lists (by name); a page names any other by ``?project=``.
SWITCHER_LIMIT = 500


def choose_project(
    request: Request,
    state: StateDep,
    project: Annotated[uuid.UUID | None, Query(description="The project to show.")] = None,
) -> ProjectChoice:
    """``?project=`` if the user may see it (404 otherwise), else the first project by name.

    The login is read in the same transaction when no dependency has read it yet (a view
    declares ``ProjectDep`` before ``PrincipalDep`` for that: one transaction instead of two)."""
    with state.read_session_factory.begin() as session:
        login = request.state.login if hasattr(request.state, "login") else None
        if login is None:
            login = _resolve_login(request, session)
        principal = require_login(login).principal
        rows = session.execute(
            visible_projects(principal)
            .with_only_columns(Project.id, Project.name)
            .order_by(Project.name)
            .limit(SWITCHER_LIMIT)
        ).all()
        projects = [ProjectRef(row.id, row.name) for row in rows]
        if project is None:
            return ProjectChoice(projects, projects[0] if projects else None)
        listed = next((p for p in projects if p.id == project), None)
        if listed is not None:  # visible, so no second query is needed
            return ProjectChoice(projects, listed)
        chosen = get_project_for(
            session=session, principal=principal, project_id=project, need=Scope.READ
        )
        current = ProjectRef(chosen.id, chosen.name)
    projects.append(current)  # beyond the switcher's limit
    return ProjectChoice(projects, current)


ProjectDep = Annotated[ProjectChoice, Depends(choose_project)]
