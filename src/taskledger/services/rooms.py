"""Rooms: create, list, change, archive a project's rooms; join, leave and list participants."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from taskledger.enums import AssigneeType, Scope
from taskledger.errors import ConflictError, NotFoundError
from taskledger.schemas.rooms import ParticipantJoin, RoomCreate, RoomUpdate
from taskledger.services.access import Principal
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import load_for, require_open_room
from taskledger.services.tasks import check_assignee
from taskledger.store.models import Project, Room, RoomParticipant
from taskledger.store.types import utcnow

ROOMS_KEYSET = Keyset("rooms", (Room.created_at, Room.id), descending=False)
PARTICIPANTS_KEYSET = Keyset(
    "room_participants", (RoomParticipant.joined_at, RoomParticipant.id), descending=False
)


def _require_free_name(*, session: Session, project_id: uuid.UUID, name: str) -> None:
    taken = session.scalar(select(exists().where(Room.project_id == project_id, Room.name == name)))
    if taken:
        raise ConflictError(f"A room named {name!r} already exists in this project.")


def create_room(
    *, session: Session, project: Project, data: RoomCreate, created_by: uuid.UUID | None
) -> Room:
    """Create an open room in ``project``; 409 when the name is taken there."""
    _require_free_name(session=session, project_id=project.id, name=data.name)
    room = Room(project_id=project.id, name=data.name, topic=data.topic, created_by=created_by)
    session.add(room)
    session.flush()
    return room


def list_rooms(
    *,
    session: Session,
    project_id: uuid.UUID,
    name: str | None = None,
    name_contains: str | None = None,
    archived: bool | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Room], str | None]:
    """One page of the project's rooms, oldest first.

    Args:
        name: Only the room of this exact name.
        name_contains: Only rooms whose name holds this text, in any case (``%`` and ``_``
            match themselves).
        archived: Only archived rooms (``True``) or only open ones (``False``).
    """
    stmt = select(Room).where(Room.project_id == project_id)
    if name is not None:
        stmt = stmt.where(Room.name == name)
    if name_contains:
        stmt = stmt.where(Room.name.icontains(name_contains, autoescape=True))
    if archived is not None:
        stmt = stmt.where(Room.archived_at.is_not(None) if archived else Room.archived_at.is_(None))
    filters = {
        "project_id": str(project_id),
        "name": name,
        "name_contains": name_contains or None,
        "archived": archived,
    }
    return paginate(
        session=session, stmt=stmt, keyset=ROOMS_KEYSET, limit=limit, cursor=cursor, filters=filters
    )


def get_room(*, session: Session, principal: Principal, room_id: uuid.UUID, need: Scope) -> Room:
    """The room, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session, principal=principal, model=Room, row_id=room_id, need=need, label="Room"
    )


def update_room(*, session: Session, room: Room, changes: RoomUpdate) -> Room:
    """Apply the fields present in ``changes``; ``archived`` archives or reopens the room."""
    values = changes.model_dump(exclude_unset=True)
    if "name" in values and values["name"] != room.name:
        _require_free_name(session=session, project_id=room.project_id, name=values["name"])
        room.name = values["name"]
    if "topic" in values:
        room.topic = values["topic"]
    if "archived" in values:
        if values["archived"] and room.archived_at is None:
            room.archived_at = utcnow()
        elif not values["archived"]:
            room.archived_at = None
    session.flush()
    return room


def _active(room_id: uuid.UUID, participant_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        RoomParticipant.room_id == room_id,
        RoomParticipant.participant_id == participant_id,
        RoomParticipant.left_at.is_(None),
    ]


def join_room(*, session: Session, room: Room, data: ParticipantJoin) -> RoomParticipant:
    """Add a participant to an open room.

    Raises:
        NotFoundError: the agent is not of the room's project, or the user may not see it.
        ConflictError: the room is archived, or the participant is in it already.
    """
    require_open_room(session=session, room_id=room.id, project_id=room.project_id)
    project = session.get(Project, room.project_id)
    assert project is not None  # the foreign key guarantees it
    check_assignee(
        session=session,
        project=project,
        assignee_type=AssigneeType(data.participant_type.value),
        assignee_id=data.participant_id,
    )
    if session.scalar(select(exists().where(*_active(room.id, data.participant_id)))):
        raise ConflictError(f"{data.participant_id} already takes part in room {room.name!r}.")
    participation = RoomParticipant(
        project_id=room.project_id,
        room_id=room.id,
        participant_id=data.participant_id,
        participant_type=data.participant_type.value,
        role=data.role.value,
        joined_at=utcnow(),
    )
    session.add(participation)
    session.flush()
    return participation


def leave_room(*, session: Session, room: Room, participant_id: uuid.UUID) -> RoomParticipant:
    """End the participant's active participation; its record stays, with ``left_at``.

    Raises:
        NotFoundError: the participant takes no part in the room now.
    """
    participation = session.scalars(
        select(RoomParticipant).where(*_active(room.id, participant_id)).with_for_update()
    ).first()
    if participation is None:
        raise NotFoundError(f"{participant_id} takes no part in room {room.name!r}.")
    participation.left_at = utcnow()
    session.flush()
    return participation


def list_participants(
    *,
    session: Session,
    room: Room,
    active: bool | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[RoomParticipant], str | None]:
    """One page of the room's participations, in the order they joined.

    Args:
        active: Only current participations (``True``) or only past ones (``False``).
    """
    stmt = select(RoomParticipant).where(RoomParticipant.room_id == room.id)
    if active is not None:
        left = RoomParticipant.left_at
        stmt = stmt.where(left.is_(None) if active else left.is_not(None))
    filters = {"room_id": str(room.id), "active": active}
    return paginate(
        session=session,
        stmt=stmt,
        keyset=PARTICIPANTS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters=filters,
    )
