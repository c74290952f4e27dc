"""``/api/v1/rooms``: a project's rooms, who takes part in them, and the tasks they hold."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from taskledger.api.deps import (
    NO_NUL,
    CursorQuery,
    LimitQuery,
    PrincipalDep,
    ProjectQuery,
    SessionDep,
    StateDep,
)
from taskledger.api.routing import LedgerRoute
from taskledger.enums import Scope
from taskledger.schemas.limits import QueryFlag
from taskledger.schemas.rooms import (
    ParticipantJoin,
    ParticipantPage,
    ParticipantRead,
    RoomCreate,
    RoomPage,
    RoomRead,
    RoomUpdate,
)
from taskledger.schemas.tasks import TaskPage
from taskledger.services import rooms, tasks
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/rooms", tags=["rooms"], route_class=LedgerRoute)

_NAME_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"description": "The name is taken in this project"}
}


@router.post(
    "", response_model=RoomRead, status_code=status.HTTP_201_CREATED, responses=_NAME_TAKEN
)
def create_room(body: RoomCreate, principal: PrincipalDep, session: SessionDep) -> RoomRead:
    """Open a room; its name must be unique within the project."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        room = rooms.create_room(
            session=session, project=project, data=body, created_by=principal.user_id
        )
        return RoomRead.model_validate(room)


@router.get("", response_model=RoomPage)
def list_rooms(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    name: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    archived: Annotated[
        QueryFlag | None, Query(description="Only archived rooms, or (false) only open ones.")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> RoomPage:
    """The project's rooms, oldest first."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = rooms.list_rooms(
            session=session,
            project_id=project.id,
            name=name,
            archived=archived,
            limit=limit,
            cursor=cursor,
        )
        return RoomPage(items=[RoomRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{room_id}", response_model=RoomRead)
def get_room(room_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> RoomRead:
    with session.begin():
        return RoomRead.model_validate(
            rooms.get_room(session=session, principal=principal, room_id=room_id, need=Scope.READ)
        )


@router.patch("/{room_id}", response_model=RoomRead, responses=_NAME_TAKEN)
def update_room(
    room_id: uuid.UUID, body: RoomUpdate, principal: PrincipalDep, session: SessionDep
) -> RoomRead:
    """Rename the room, change its topic, or archive (`archived: true`) or reopen it."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.WRITE
        )
        return RoomRead.model_validate(rooms.update_room(session=session, room=room, changes=body))


@router.delete(
    "/{room_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "A retention hold protects the room or its records"}},
)
def delete_room(
    room_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete the room with its participations; its tasks stay, out of any room.

    Everything the delete takes or changes is archived first, the delete is audited and counted
    by the spike guard, and a hold on the room refuses it (409)."""
    with session.begin():
        rooms.get_room(session=session, principal=principal, room_id=room_id, need=Scope.WRITE)
    state.delete_records("rooms", [room_id], actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{room_id}/participants",
    response_model=ParticipantRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "The room is archived, or the participant is in it already"}},
)
def join_room(
    room_id: uuid.UUID, body: ParticipantJoin, principal: PrincipalDep, session: SessionDep
) -> ParticipantRead:
    """Let an agent of the room's project, or a user who may see it, join the room."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.WRITE
        )
        return ParticipantRead.model_validate(
            rooms.join_room(session=session, room=room, data=body)
        )


@router.post("/{room_id}/participants/{participant_id}/leave", response_model=ParticipantRead)
def leave_room(
    room_id: uuid.UUID, participant_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ParticipantRead:
    """End the active participation of the agent or user `participant_id`; it stays listed."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.WRITE
        )
        return ParticipantRead.model_validate(
            rooms.leave_room(session=session, room=room, participant_id=participant_id)
        )


@router.get("/{room_id}/participants", response_model=ParticipantPage)
def list_participants(
    room_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    active: Annotated[
        QueryFlag | None, Query(description="Only current participations, or (false) past ones.")
    ] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ParticipantPage:
    """The room's participations, in the order they joined."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.READ
        )
        rows, next_cursor = rooms.list_participants(
            session=session, room=room, active=active, limit=limit, cursor=cursor
        )
        return ParticipantPage(
            items=[ParticipantRead.model_validate(p) for p in rows], next_cursor=next_cursor
        )


@router.get("/{room_id}/tasks", response_model=TaskPage)
def list_room_tasks(
    room_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> TaskPage:
    """The room's tasks, oldest first (as `GET /tasks?room_id=...`)."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.READ
        )
        rows, next_cursor = tasks.list_tasks(
            session=session, project_id=room.project_id, room_id=room.id, limit=limit, cursor=cursor
        )
        return TaskPage(items=tasks.to_read(session=session, tasks=rows), next_cursor=next_cursor)
