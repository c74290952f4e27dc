"""``taskledger rooms``: open, list and archive rooms, and let agents and users join or leave."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx
from taskledger.enums import RoomRole, values
from taskledger.errors import NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taskledger.store.models import Project, Room, RoomParticipant

_PROJECT = click.option("--project", "project_ref", required=True, help="Project name or id.")


@click.group()
def rooms() -> None:
    """Manage a project's rooms and who takes part in them."""


def _project(session: Session, name_or_id: str) -> Project:
    from taskledger.services import projects as projects_service

    project = projects_service.find_project(session=session, name_or_id=name_or_id)
    if project is None:
        raise NotFoundError(f"no project named {name_or_id!r}")
    return project


def _room(session: Session, project: Project, name_or_id: str) -> Room:
    from sqlalchemy import or_, select

    from taskledger.store.models import Room

    condition = Room.name == name_or_id
    with contextlib.suppress(ValueError):  # not an id: a name only
        condition = or_(condition, Room.id == uuid.UUID(name_or_id))
    room = session.scalars(
        select(Room).where(Room.project_id == project.id, condition).limit(1)
    ).first()
    if room is None:
        raise NotFoundError(f"no room {name_or_id!r} in project {project.name!r}")
    return room


def _participant(session: Session, agent_id: uuid.UUID | None, email: str | None) -> uuid.UUID:
    from taskledger.services import users as users_service

    if (agent_id is None) == (email is None):
        raise click.UsageError("Give exactly one of --agent and --user.")
    if agent_id is not None:
        return agent_id
    assert email is not None
    user = users_service.find_user(session=session, email=email)
    if user is None:
        raise NotFoundError(f"no user with email {email!r}")
    return user.id


def _room_dict(room: Room) -> dict[str, object]:
    return {
        "id": str(room.id),
        "project_id": str(room.project_id),
        "name": room.name,
        "topic": room.topic,
        "created_at": room.created_at.isoformat(),
        "archived_at": room.archived_at.isoformat() if room.archived_at else None,
    }


def _participant_dict(participation: RoomParticipant) -> dict[str, object]:
    return {
        "id": participation.id,
        "room_id": str(participation.room_id),
        "participant_id": str(participation.participant_id),
        "participant_type": participation.participant_type,
        "role": participation.role,
        "joined_at": participation.joined_at.isoformat(),
        "left_at": participation.left_at.isoformat() if participation.left_at else None,
    }


@rooms.command("create")
@click.argument("name")
@_PROJECT
@click.option("--topic", default=None, help="What the room is for.")
@json_option
@pass_ctx
def create(obj: CliContext, name: str, project_ref: str, topic: str | None, as_json: bool) -> None:
    """Open room NAME in a project; the name must be unique there."""
    from pydantic import ValidationError

    from taskledger.schemas.rooms import RoomCreate
    from taskledger.services import rooms as rooms_service

    try:
        data = RoomCreate(name=name, topic=topic)
    except ValidationError as exc:
        raise click.UsageError(f"invalid room: {exc.errors()[0]['msg']}") from None
    with obj.sessions().begin() as session:
        project = _project(session, project_ref)
        room = rooms_service.create_room(
            session=session, project=project, data=data, created_by=None
        )
        result = _room_dict(room)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"created room {result['name']} ({result['id']}) in project {project_ref}")


@rooms.command("list")
@_PROJECT
@click.option(
    "--archived/--open", "archived", default=None, help="Only archived rooms, or only open ones."
)
@json_option
@pass_ctx
def list_(obj: CliContext, project_ref: str, archived: bool | None, as_json: bool) -> None:
    """List a project's rooms, oldest first."""
    from rich.table import Table

    from taskledger.services import rooms as rooms_service
    from taskledger.store.engine import read_only

    rows: list[dict[str, object]] = []
    with read_only(obj.sessions())() as session:
        project = _project(session, project_ref)
        cursor: str | None = None
        while True:
            page, cursor = rooms_service.list_rooms(
                session=session, project_id=project.id, archived=archived, limit=1000, cursor=cursor
            )
            rows.extend(_room_dict(r) for r in page)
            if cursor is None:
                break
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "topic", "created", "archived")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["name"]),
            str(r["topic"] or "-"),
            str(r["created_at"]),
            str(r["archived_at"] or "-"),
        )
    obj.console.print(table)


@rooms.command("archive")
@click.argument("room_ref", metavar="ROOM")
@_PROJECT
@json_option
@pass_ctx
def archive(obj: CliContext, room_ref: str, project_ref: str, as_json: bool) -> None:
    """Archive ROOM (a name or id): it then takes no new participants or tasks."""
    from taskledger.schemas.rooms import RoomUpdate
    from taskledger.services import rooms as rooms_service

    with obj.sessions().begin() as session:
        room = _room(session, _project(session, project_ref), room_ref)
        rooms_service.update_room(session=session, room=room, changes=RoomUpdate(archived=True))
        result = _room_dict(room)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"archived room {result['name']} ({result['id']})")


@rooms.command("join")
@click.argument("room_ref", metavar="ROOM")
@_PROJECT
@click.option("--agent", "agent_id", type=click.UUID, default=None, help="An agent's id.")
@click.option("--user", "email", default=None, help="A user's email.")
@click.option(
    "--role", type=click.Choice(values(RoomRole)), default=RoomRole.MEMBER.value, show_default=True
)
@json_option
@pass_ctx
def join(
    obj: CliContext,
    room_ref: str,
    project_ref: str,
    agent_id: uuid.UUID | None,
    email: str | None,
    role: str,
    as_json: bool,
) -> None:
    """Let an agent of the project (--agent) or a user who may see it (--user) join ROOM."""
    from taskledger.enums import ParticipantType
    from taskledger.schemas.rooms import ParticipantJoin
    from taskledger.services import rooms as rooms_service

    with obj.sessions().begin() as session:
        room = _room(session, _project(session, project_ref), room_ref)
        who = _participant(session, agent_id, email)
        kind = ParticipantType.AGENT if agent_id is not None else ParticipantType.USER
        data = ParticipantJoin(participant_type=kind, participant_id=who, role=RoomRole(role))
        participation = rooms_service.join_room(session=session, room=room, data=data)
        result = _participant_dict(participation)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{kind.value} {who} joined room {room_ref} as {role}")


@rooms.command("leave")
@click.argument("room_ref", metavar="ROOM")
@_PROJECT
@click.option("--agent", "agent_id", type=click.UUID, default=None, help="An agent's id.")
@click.option("--user", "email", default=None, help="A user's email.")
@json_option
@pass_ctx
def leave(
    obj: CliContext,
    room_ref: str,
    project_ref: str,
    agent_id: uuid.UUID | None,
    email: str | None,
    as_json: bool,
) -> None:
    """End the active participation of an agent (--agent) or user (--user) in ROOM."""
    from taskledger.services import rooms as rooms_service

    with obj.sessions().begin() as session:
        room = _room(session, _project(session, project_ref), room_ref)
        who = _participant(session, agent_id, email)
        participation = rooms_service.leave_room(session=session, room=room, participant_id=who)
        result = _participant_dict(participation)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{who} left room {room_ref}")
