"""Logging in and out of the web UI, and ``/``, which leads to the Runs page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from taskledger.errors import AuthenticationError
from taskledger.services import auth, web_sessions
from taskledger.web.deps import SESSION_COOKIE, MaybeLoginDep, SessionDep, StateDep
from taskledger.web.pages import page_router, pages_of

router = page_router()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another origin)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/runs"
    return target


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


@router.get("/login")
def login_page(request: Request, login: MaybeLoginDep, next: str | None = None) -> Response:
    if login is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return pages_of(request).render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
def log_in(
    request: Request,
    session: SessionDep,
    state: StateDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form(max_length=2048)] = None,
) -> Response:
    """Check the password through the same throttle as the API; on success start a session.

    A wrong password shows the form again (401); a throttled login (429) or a busy password
    check (503) shows the error page, with Retry-After."""
    throttle = state.login_throttle
    attempt = throttle.begin(email, request.client.host if request.client else None)
    try:
        with session.begin():
            candidate = auth.find_login_user(session=session, email=email)
        user = auth.check_password(candidate, password)
    except AuthenticationError as exc:
        throttle.failed(attempt)
        context = {"next": safe_next(next), "email": email, "error": str(exc.detail)}
        return pages_of(request).render(request, "login.html", context, status_code=401)
    except BaseException:
        throttle.abandoned(attempt)
        raise
    throttle.succeeded(attempt)
    lifetime = timedelta(minutes=state.settings.auth.web_session_minutes)
    with session.begin():
        raw, _login = web_sessions.open_session(session=session, user=user, lifetime=lifetime)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def log_out(request: Request, session: SessionDep) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        with session.begin():
            web_sessions.close_session(session=session, raw=raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
