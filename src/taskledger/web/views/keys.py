"""The API keys page: a project's keys; create one (its secret shown once, in the answer to
the create form only) and revoke one. The same rule as the API: the project's owner or a
superuser (``Scope.ADMIN`` on the project)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Form, Query, Request, Response
from pydantic import ValidationError

from taskledger.enums import Scope
from taskledger.errors import NotFoundError
from taskledger.schemas.api_keys import ApiKeyCreate
from taskledger.services import agents, api_keys
from taskledger.services.access import get_project_for
from taskledger.store.models import ApiKey
from taskledger.web.deps import PrincipalDep, ProjectDep, SessionDep
from taskledger.web.pages import is_htmx, page_router, pages_of

router = page_router()

#: Keys listed per page, and agents offered in the create form.
PAGE_SIZE = 100
AGENT_CHOICES = 500
#: Answers that show a secret must never be kept by a cache (or the back button's).
NO_STORE = {"Cache-Control": "no-store"}
CursorParam = Annotated[str | None, Query(max_length=2048, description="Where the page starts.")]
#: A form names its project in its URL, always: never the switcher's default.
ProjectParam = Annotated[uuid.UUID, Query(description="The project of the key.")]


#: Clearer words than pydantic's for the usual mistakes, by field and error type.
_PLAIN = {
    ("name", "string_too_short"): "give the key a name.",
    ("scopes", "too_short"): "choose at least one scope.",
    ("scopes", "enum"): "a scope is one of read, write and admin.",
    ("agent_id", "uuid_parsing"): "choose one of the project's agents.",
}
_LABELS = {"name": "Name", "scopes": "Scopes", "agent_id": "Agent"}


def validation_messages(exc: ValidationError) -> list[str]:
    """A validation error's problems, one sentence each, naming the field."""
    messages = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        text = _PLAIN.get((field, error["type"]), str(error["msg"]))
        message = f"{_LABELS.get(field, field)}: {text}" if field else text
        if message not in messages:
            messages.append(message)
    return messages


def _render(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    choice: ProjectDep,
    *,
    cursor: str | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The page (or, for htmx, its body) with the project's keys listed."""
    context: dict[str, Any] = {
        "page": "keys",
        "choice": choice,
        "keys": [],
        "agents": [],
        "scopes": [s.value for s in Scope],
        "form": {"name": "", "scopes": [Scope.READ.value], "agent_id": ""},
        "cursor": cursor,
        **(extra or {}),
    }
    project = choice.current
    if project is not None:
        with session.begin():
            get_project_for(
                session=session, principal=principal, project_id=project.id, need=Scope.ADMIN
            )
            found, next_cursor = api_keys.list_keys(
                session=session, project_id=project.id, limit=PAGE_SIZE, cursor=cursor
            )
            offered, _ = agents.list_agents(
                session=session, project_id=project.id, limit=AGENT_CHOICES, cursor=None
            )
            names = agents.names_of(
                session=session,
                project_id=project.id,
                agent_ids={k.agent_id for k in found if k.agent_id is not None},
            )
        context.update(keys=found, next_cursor=next_cursor, agents=offered, agent_names=names)
    name = "_keys_body.html" if is_htmx(request) else "keys.html"
    headers = NO_STORE if "created" in context else None
    return pages_of(request).render(
        request, name, context, status_code=status_code, headers=headers
    )


@router.get("/keys")
def keys_page(
    request: Request,
    session: SessionDep,
    choice: ProjectDep,  # before the principal: one transaction reads both
    principal: PrincipalDep,
    cursor: CursorParam = None,
) -> Response:
    return _render(request, session, principal, choice, cursor=cursor)


@router.post("/keys")
def create_key(
    request: Request,
    session: SessionDep,
    choice: ProjectDep,  # before the principal: one transaction reads both
    principal: PrincipalDep,
    project: ProjectParam,
    name: Annotated[str, Form(max_length=1000)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    agent_id: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Issue a key; the answer shows its secret, this once (422 with the problems inline)."""
    form = {"name": name, "scopes": scopes or [], "agent_id": agent_id}
    try:
        data = ApiKeyCreate.model_validate(
            {"name": name.strip(), "scopes": scopes or [], "agent_id": agent_id or None}
        )
    except ValidationError as exc:
        extra = {"form": form, "errors": validation_messages(exc)}
        return _render(request, session, principal, choice, extra=extra, status_code=422)
    try:
        with session.begin():
            target = get_project_for(
                session=session, principal=principal, project_id=project, need=Scope.ADMIN
            )
            key, secret = api_keys.create_key(
                session=session,
                project=target,
                name=data.name,
                scopes=data.scopes,
                agent_id=data.agent_id,
                created_by=principal.user_id,
            )
            created = {"name": key.name, "prefix": key.prefix, "secret": secret}
    except NotFoundError as exc:  # the agent is not one of the project's
        extra = {"form": form, "errors": [f"Agent: {exc.detail}"]}
        return _render(request, session, principal, choice, extra=extra, status_code=422)
    return _render(request, session, principal, choice, extra={"created": created})


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    request: Request,
    key_id: uuid.UUID,
    session: SessionDep,
    choice: ProjectDep,  # before the principal: one transaction reads both
    principal: PrincipalDep,
    project: ProjectParam,
) -> Response:
    """Revoke a key of the project (404 for any other key); it stops working at once."""
    with session.begin():
        get_project_for(session=session, principal=principal, project_id=project, need=Scope.ADMIN)
        key: ApiKey = api_keys.revoke_key(session=session, project_id=project, key_id=key_id)
        revoked = {"name": key.name, "prefix": key.prefix}
    return _render(request, session, principal, choice, extra={"revoked": revoked})
