"""Loading project-scoped records for a caller, and checking references stay in one project.

Every resource of SPEC section 2 belongs to one project. A record of a project the caller cannot
see answers the same 404 as a missing one, so ids of other projects reveal nothing; a record the
caller can see but not change answers 403 (a key without the scope).
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy.orm import Session

from taskledger.enums import Scope
from taskledger.errors import ConflictError, NotFoundError, PermissionDenied
from taskledger.services.access import ADMIN_KEY_ONLY, Principal, PrincipalKind, get_project_for
from taskledger.store.models import (
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Room,
    Task,
)

M = TypeVar("M", Agent, Task, AgentSession, AgentConnection, Instruction, Room)


def load_for(
    *,
    session: Session,
    principal: Principal,
    model: type[M],
    row_id: uuid.UUID | int,
    need: Scope,
    label: str,
    lock: bool | None = None,
) -> M:
    """The record ``row_id`` of ``model``, if the caller may do ``need`` on it.

    Writes lock the row (``SELECT ... FOR UPDATE`` on PostgreSQL) so that two concurrent
    changes, such as ending a session twice, are decided one after the other. ``lock=False``
    skips that for writes that are a single conditional UPDATE anyway (heartbeats).

    Raises:
        NotFoundError: the record does not exist, or belongs to a project the caller cannot see.
        PermissionDenied: the caller is the admin key, or a key without ``need``.
    """
    if principal.kind is PrincipalKind.ADMIN_KEY:
        raise PermissionDenied(ADMIN_KEY_ONLY)
    if lock is None:
        lock = need is not Scope.READ
    row = session.get(model, row_id, with_for_update=lock)
    if row is None:
        raise NotFoundError(f"{label} not found.")
    try:
        get_project_for(session=session, principal=principal, project_id=row.project_id, need=need)
    except NotFoundError:
        raise NotFoundError(f"{label} not found.") from None
    return row


def require_in_project(
    *, session: Session, model: type[M], row_id: uuid.UUID | int, project_id: uuid.UUID, label: str
) -> M:
    """The record ``row_id`` referenced from ``project_id``; 404 unless it is in that project."""
    row = session.get(model, row_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError(f"{label} {row_id} not found in this project.")
    return row


def require_open_room(*, session: Session, room_id: uuid.UUID, project_id: uuid.UUID) -> Room:
    """The room ``room_id`` of ``project_id``, open to new participants and tasks.

    Raises:
        NotFoundError: no such room in that project.
        ConflictError: the room is archived.
    """
    room = require_in_project(
        session=session, model=Room, row_id=room_id, project_id=project_id, label="Room"
    )
    if room.archived_at is not None:
        raise ConflictError(
            f"Room {room.name!r} is archived: it takes no new participants or tasks."
        )
    return room
