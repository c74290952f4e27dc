"""``/api/v1/projects``: create, list, read, rename or hand over, delete (with its rooms)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, SessionDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.schemas.projects import ProjectCreate, ProjectPage, ProjectRead, ProjectUpdate
from taskledger.services import projects, users
from taskledger.services.access import require_user
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], route_class=LedgerRoute)


@router.post("", response_model=ProjectRead, status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate, principal: PrincipalDep, session: SessionDep
) -> ProjectRead:
    """Create a project; the calling user becomes its owner."""
    require_user(principal)
    assert principal.user_id is not None
    with session.begin():
        owner = users.get_user(session=session, user_id=principal.user_id)
        return ProjectRead.model_validate(
            projects.create_project(session=session, name=body.name, owner=owner)
        )


@router.get("", response_model=ProjectPage)
def list_projects(
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ProjectPage:
    """The projects the caller may see: all for superusers, owned ones for users, a key's own."""
    with session.begin():
        rows, next_cursor = projects.list_projects(
            session=session, principal=principal, limit=limit, cursor=cursor
        )
        return ProjectPage(
            items=[ProjectRead.model_validate(p) for p in rows], next_cursor=next_cursor
        )


@router.get("/{project_id}", response_model=ProjectRead)
def get_project(project_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> ProjectRead:
    with session.begin():
        return ProjectRead.model_validate(
            projects.get_project(session=session, principal=principal, project_id=project_id)
        )


@router.patch("/{project_id}", response_model=ProjectRead)
def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, principal: PrincipalDep, session: SessionDep
) -> ProjectRead:
    """Rename the project or hand it to another user (owner or superuser)."""
    with session.begin():
        project = projects.update_project(
            session=session, principal=principal, project_id=project_id, changes=body
        )
        return ProjectRead.model_validate(project)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "The project still holds records, or a hold protects a room"}},
)
def delete_project(
    project_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete a project (owner or superuser) that holds no records but rooms; one holding
    records is refused with 409.

    Its rooms go with it, each archived first with its participations and audited, as every API
    delete goes (a hold on one of them refuses the delete, 409)."""
    with session.begin():
        room_ids = projects.rooms_to_delete(
            session=session, principal=principal, project_id=project_id
        )
    if room_ids:
        state.delete_records("rooms", room_ids, actor=principal.actor)
    with session.begin():
        projects.delete_project(session=session, principal=principal, project_id=project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
