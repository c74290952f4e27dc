"""The Users page (superusers only): list users; create one, deactivate and reactivate one,
and set a new password. A deactivated user's web sessions end at once (the session resolver
refuses inactive users), as do those of a user whose password was reset."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Form, Query, Request, Response
from pydantic import ValidationError

from taskledger.errors import ConflictError
from taskledger.schemas.users import UserCreate, UserUpdate
from taskledger.services import users
from taskledger.services.access import require_superuser
from taskledger.services.passwords import hash_password
from taskledger.web.deps import PrincipalDep, SessionDep
from taskledger.web.pages import is_htmx, page_router, pages_of

router = page_router()

PAGE_SIZE = 100
CursorParam = Annotated[str | None, Query(max_length=2048, description="Where the page starts.")]
#: Password fields: long enough for any passphrase, short enough to refuse a flood.
PasswordField = Annotated[str, Form(max_length=1024)]

_PLAIN = {
    ("email", "string_pattern_mismatch"): "enter an email address such as ada@example.com.",
    ("email", "string_too_short"): "enter an email address such as ada@example.com.",
    ("password", "string_too_short"): "use at least 8 characters.",
    ("password", "string_too_long"): "use at most 1024 characters.",
}
_LABELS = {"email": "Email", "password": "Password", "is_superuser": "Superuser"}


def validation_messages(exc: ValidationError) -> list[str]:
    """A validation error's problems, one sentence each, naming the field."""
    messages = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        text = _PLAIN.get((field, error["type"]), str(error["msg"]))
        messages.append(f"{_LABELS.get(field, field)}: {text}" if field else text)
    return messages


def _render(
    request: Request,
    session: SessionDep,
    *,
    cursor: str | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The page (for htmx, its body) listing the users, with ``extra`` (messages, the form)."""
    with session.begin():
        found, next_cursor = users.list_users(session=session, limit=PAGE_SIZE, cursor=cursor)
    context: dict[str, Any] = {
        "page": "users",
        "users": found,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "form": {"email": "", "is_superuser": False},
        **(extra or {}),
    }
    name = "_users_body.html" if is_htmx(request) else "users.html"
    return pages_of(request).render(request, name, context, status_code=status_code)


@router.get("/users")
def users_page(
    request: Request, principal: PrincipalDep, session: SessionDep, cursor: CursorParam = None
) -> Response:
    require_superuser(principal)
    return _render(request, session, cursor=cursor)


@router.post("/users")
def create_user(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: PasswordField = "",
    is_superuser: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    """Create an active user (422 for bad input, 409 when the email is taken; inline)."""
    require_superuser(principal)
    form = {"email": email, "is_superuser": is_superuser is not None}
    try:
        data = UserCreate.model_validate(
            {"email": email.strip(), "password": password, "is_superuser": is_superuser is not None}
        )
    except ValidationError as exc:
        extra = {"form": form, "errors": validation_messages(exc)}
        return _render(request, session, extra=extra, status_code=422)
    hashed = hash_password(data.password)  # before the write transaction: it may wait a while
    try:
        with session.begin():
            user = users.create_user(
                session=session,
                email=data.email,
                password=data.password,
                is_superuser=data.is_superuser,
                password_hash=hashed,
            )
            done = f"Created {user.email}{' (superuser)' if user.is_superuser else ''}."
    except ConflictError as exc:
        extra = {"form": form, "errors": [f"Email: {exc.detail}"]}
        return _render(request, session, extra=extra, status_code=409)
    return _render(request, session, extra={"done": done})


def _change(
    request: Request,
    session: SessionDep,
    user_id: uuid.UUID,
    changes: UserUpdate,
    *,
    done: str,
    password_hash: str | None = None,
) -> Response:
    """Apply ``changes`` to a user; a refusal (the last superuser) is shown inline as 409."""
    try:
        with session.begin():
            user = users.update_user(
                session=session, user_id=user_id, changes=changes, password_hash=password_hash
            )
            message = done.format(email=user.email)
    except ConflictError as exc:
        extra = {"errors": [str(exc.detail)], "focus": user_id}
        return _render(request, session, extra=extra, status_code=409)
    return _render(request, session, extra={"done": message, "focus": user_id})


@router.post("/users/{user_id}/deactivate")
def deactivate_user(
    request: Request, user_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Deactivate a user: they can no longer log in, and their web sessions end at once."""
    require_superuser(principal)
    return _change(
        request,
        session,
        user_id,
        UserUpdate(is_active=False),
        done="Deactivated {email}: they are logged out and cannot log in.",
    )


@router.post("/users/{user_id}/activate")
def activate_user(
    request: Request, user_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    require_superuser(principal)
    return _change(
        request,
        session,
        user_id,
        UserUpdate(is_active=True),
        done="Reactivated {email}: they can log in again.",
    )


@router.post("/users/{user_id}/password")
def reset_password(
    request: Request,
    user_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    password: PasswordField = "",
) -> Response:
    """Set a new password, chosen by the superuser; the user's web sessions end."""
    require_superuser(principal)
    try:
        changes = UserUpdate.model_validate({"password": password})
    except ValidationError as exc:
        extra = {"errors": validation_messages(exc), "focus": user_id}
        return _render(request, session, extra=extra, status_code=422)
    with session.begin():  # 404 before hashing, for an unknown user
        users.get_user(session=session, user_id=user_id)
    hashed = hash_password(password)  # before the write transaction: it may wait a while
    return _change(
        request,
        session,
        user_id,
        changes,
        done="Set a new password for {email}: their sessions have ended.",
        password_hash=hashed,
    )
