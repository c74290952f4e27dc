"""Projects: create (the creator owns it), list the visible ones, rename, hand over, delete."""

from __future__ import annotations

import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from taskledger.enums import Scope
from taskledger.errors import ConflictError, NotFoundError, PermissionDenied
from taskledger.schemas.projects import ProjectUpdate
from taskledger.services.access import (
    Principal,
    get_project_for,
    require_project_owner,
    visible_projects,
)
from taskledger.services.pagination import Keyset, paginate
from taskledger.store.models import (
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Project,
    Room,
    Run,
    Task,
    User,
)

PROJECTS_KEYSET = Keyset("projects", (Project.created_at, Project.id), descending=False)
# What a project may hold that blocks its delete: removing these with it would drop history that
# retention should archive first. Its rooms do not block it: the delete takes them, through the
# archive (see :func:`rooms_to_delete`).
_OWNED_RECORDS = (Run, Task, Agent, AgentSession, AgentConnection, Instruction)


def find_project(*, session: Session, name_or_id: str) -> Project | None:
    """A project by name, or by id when the text is a UUID."""
    try:
        project = session.get(Project, uuid.UUID(name_or_id))
    except ValueError:
        project = None
    return project or session.scalar(select(Project).where(Project.name == name_or_id))


def create_project(*, session: Session, name: str, owner: User) -> Project:
    """Create a project owned by ``owner``; 409 when the name is taken."""
    if session.scalar(select(exists().where(Project.name == name))):
        raise ConflictError(f"A project named {name!r} already exists.")
    project = Project(name=name, owner_id=owner.id)
    session.add(project)
    session.flush()
    return project


def list_projects(
    *, session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[Project], str | None]:
    """One page of the projects the caller may see, oldest first."""
    return paginate(
        session=session,
        stmt=visible_projects(principal),
        keyset=PROJECTS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"principal": principal.actor},
    )


def get_project(*, session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    """The project, if the caller may see it (404 otherwise)."""
    return get_project_for(
        session=session, principal=principal, project_id=project_id, need=Scope.READ
    )


def update_project(
    *, session: Session, principal: Principal, project_id: uuid.UUID, changes: ProjectUpdate
) -> Project:
    """Rename the project or give it to another active user (owner or superuser only)."""
    project = get_project_for(
        session=session, principal=principal, project_id=project_id, need=Scope.READ
    )
    require_project_owner(principal, project)
    if changes.name is not None and changes.name != project.name:
        if session.scalar(select(exists().where(Project.name == changes.name))):
            raise ConflictError(f"A project named {changes.name!r} already exists.")
        project.name = changes.name
    if changes.owner_id is not None and changes.owner_id != project.owner_id:
        new_owner = session.get(User, changes.owner_id)
        if new_owner is None or not new_owner.is_active:
            raise NotFoundError("The new owner is not an active user.")
        project.owner_id = new_owner.id
    session.flush()
    return project


def _deletable_project(*, session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    project = get_project_for(
        session=session, principal=principal, project_id=project_id, need=Scope.READ
    )
    require_project_owner(principal, project)
    for model in _OWNED_RECORDS:
        if session.scalar(select(exists().where(model.project_id == project.id))):
            raise ConflictError(
                f"Project {project.name!r} still holds {model.__tablename__}; remove its "
                "records through retention (which archives them) before deleting it."
            )
    return project


def rooms_to_delete(
    *, session: Session, principal: Principal, project_id: uuid.UUID
) -> list[uuid.UUID]:
    """The rooms a delete of the project takes, once it may be deleted (404, 403 or 409 first).

    The caller deletes them through the archive, as every API delete goes, before
    :func:`delete_project`."""
    project = _deletable_project(session=session, principal=principal, project_id=project_id)
    return list(session.scalars(select(Room.id).where(Room.project_id == project.id)))


def delete_project(*, session: Session, principal: Principal, project_id: uuid.UUID) -> None:
    """Delete a project that holds no records any more (its API keys go with it).

    A project that still holds records is refused with 409: its history must leave through
    retention, which archives and audits, never through a silent cascade. Its rooms must have
    gone first (:func:`rooms_to_delete`); one created since is a 409 too.
    """
    project = _deletable_project(session=session, principal=principal, project_id=project_id)
    if session.scalar(select(exists().where(Room.project_id == project.id))):
        raise ConflictError(f"Project {project.name!r} gained a room while it was being deleted.")
    if not principal.is_user:  # pragma: no cover - require_project_owner already refused
        raise PermissionDenied("Only the project's owner or a superuser may delete it.")
    session.delete(project)
    session.flush()
