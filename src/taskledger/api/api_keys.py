"""``/api/v1/projects/{id}/api-keys``: issue (secret shown once), list and revoke project keys."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, SessionDep
from taskledger.api.routing import LedgerRoute
from taskledger.enums import Scope
from taskledger.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyRead
from taskledger.services import api_keys
from taskledger.services.access import get_project_for
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/api-keys", tags=["api-keys"], route_class=LedgerRoute
)


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(
    project_id: uuid.UUID, body: ApiKeyCreate, principal: PrincipalDep, session: SessionDep
) -> ApiKeyCreated:
    """Issue a key. The response holds the secret; it is never shown again."""
    with session.begin():
        project = get_project_for(
            session=session, principal=principal, project_id=project_id, need=Scope.ADMIN
        )
        key, secret = api_keys.create_key(
            session=session,
            project=project,
            name=body.name,
            scopes=body.scopes,
            agent_id=body.agent_id,
            created_by=principal.user_id,
        )
        return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=secret)


@router.get("", response_model=ApiKeyPage)
def list_keys(
    project_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ApiKeyPage:
    """The project's keys, without secrets (revoked ones show `revoked_at`)."""
    with session.begin():
        get_project_for(
            session=session, principal=principal, project_id=project_id, need=Scope.ADMIN
        )
        rows, next_cursor = api_keys.list_keys(
            session=session, project_id=project_id, limit=limit, cursor=cursor
        )
        return ApiKeyPage(
            items=[ApiKeyRead.model_validate(k) for k in rows], next_cursor=next_cursor
        )


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(
    project_id: uuid.UUID, key_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Revoke a key; it stops authenticating at once. Revoking twice is harmless."""
    with session.begin():
        get_project_for(
            session=session, principal=principal, project_id=project_id, need=Scope.ADMIN
        )
        api_keys.revoke_key(session=session, project_id=project_id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
