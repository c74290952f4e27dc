"""What the web UI's Tasks and Rooms pages show besides the records themselves: the names
behind ids (assignees, rooms, participants, dependencies), the counts of each room, and the
choices of the filters. Each function answers a whole page in a few queries, never one per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskledger.enums import AssigneeType, ParticipantType, TaskStatus
from taskledger.schemas.tasks import TaskRead
from taskledger.services import task_graph, tasks
from taskledger.services.task_graph import TaskRef
from taskledger.store.models import Agent, Project, Room, RoomParticipant, Task, User

#: How many agents, users and rooms a filter's select lists at most.
CHOICES_LIMIT = 500


@dataclass(frozen=True)
class Choice:
    id: uuid.UUID
    label: str


@dataclass(frozen=True)
class TaskRow:
    """A task with the names a page shows for its ids."""

    task: TaskRead
    assignee: str | None
    room: Choice | None
    dependencies: list[TaskRef]

    @property
    def blocked_by(self) -> list[TaskRef]:
        """The dependencies not completed yet (what ``blocked_by`` holds, with names)."""
        return [d for d in self.dependencies if d.status != TaskStatus.COMPLETED.value]


def display_names(
    *, session: Session, agent_ids: Collection[uuid.UUID], user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Agents by name and users by email; an id of neither is left out."""
    names: dict[uuid.UUID, str] = {}
    if agent_ids:
        rows = session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(set(agent_ids))))
        names.update({row.id: row.name for row in rows})
    if user_ids:
        rows = session.execute(select(User.id, User.email).where(User.id.in_(set(user_ids))))
        names.update({row.id: row.email for row in rows})
    return names


def room_names(*, session: Session, room_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not room_ids:
        return {}
    rows = session.execute(select(Room.id, Room.name).where(Room.id.in_(set(room_ids))))
    return {row.id: row.name for row in rows}


def task_rows(*, session: Session, task_list: Sequence[Task]) -> list[TaskRow]:
    """The rows of a page of tasks: each response with its assignee's, room's and
    dependencies' names (four queries for the page)."""
    reads = tasks.to_read(session=session, tasks=task_list)
    agents = {t.assigned_to for t in reads if t.assigned_to_type is AssigneeType.AGENT}
    users = {t.assigned_to for t in reads if t.assigned_to_type is AssigneeType.USER}
    names = display_names(
        session=session,
        agent_ids={i for i in agents if i is not None},
        user_ids={i for i in users if i is not None},
    )
    rooms = room_names(session=session, room_ids={t.room_id for t in reads if t.room_id})
    refs = task_graph.dependency_refs(session=session, task_ids=[t.id for t in reads])
    return [
        TaskRow(
            task=read,
            assignee=names.get(read.assigned_to) if read.assigned_to else None,
            room=Choice(read.room_id, rooms[read.room_id]) if read.room_id in rooms else None,
            dependencies=refs[read.id],
        )
        for read in reads
    ]


@dataclass(frozen=True)
class TaskFilterChoices:
    """What the Tasks page's selects offer: the project's agents, the users tasks may be
    assigned to (the owner, and any user some task of the project is assigned to), its rooms."""

    assignees: list[Choice]
    rooms: list[Choice]


def task_filter_choices(*, session: Session, project_id: uuid.UUID) -> TaskFilterChoices:
    agents = session.execute(
        select(Agent.id, Agent.name)
        .where(Agent.project_id == project_id)
        .order_by(Agent.name)
        .limit(CHOICES_LIMIT)
    )
    assigned_users = (
        select(Task.assigned_to)
        .where(Task.project_id == project_id, Task.assigned_to_type == AssigneeType.USER.value)
        .distinct()
    )
    owner = select(Project.owner_id).where(Project.id == project_id)
    users = session.execute(
        select(User.id, User.email)
        .where(User.id.in_(assigned_users) | User.id.in_(owner))
        .order_by(User.email)
        .limit(CHOICES_LIMIT)
    )
    rooms = session.execute(
        select(Room.id, Room.name)
        .where(Room.project_id == project_id)
        .order_by(Room.name)
        .limit(CHOICES_LIMIT)
    )
    return TaskFilterChoices(
        assignees=[Choice(r.id, r.name) for r in agents] + [Choice(r.id, r.email) for r in users],
        rooms=[Choice(r.id, r.name) for r in rooms],
    )


@dataclass(frozen=True)
class RoomCounts:
    active_participants: int = 0
    past_participants: int = 0
    tasks: int = 0


def room_counts(
    *, session: Session, room_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, RoomCounts]:
    """Participants (active and past) and tasks of many rooms, in two grouped queries."""
    wanted = set(room_ids)
    if not wanted:
        return {}
    active = func.count(RoomParticipant.id).filter(RoomParticipant.left_at.is_(None))
    past = func.count(RoomParticipant.id).filter(RoomParticipant.left_at.is_not(None))
    people = {
        row.room_id: (row.active, row.past)
        for row in session.execute(
            select(RoomParticipant.room_id, active.label("active"), past.label("past"))
            .where(RoomParticipant.room_id.in_(wanted))
            .group_by(RoomParticipant.room_id)
        )
    }
    task_counts: dict[uuid.UUID | None, int] = {
        room_id: count
        for room_id, count in session.execute(
            select(Task.room_id, func.count(Task.id))
            .where(Task.room_id.in_(wanted))
            .group_by(Task.room_id)
        )
    }
    return {
        room_id: RoomCounts(
            active_participants=people.get(room_id, (0, 0))[0],
            past_participants=people.get(room_id, (0, 0))[1],
            tasks=task_counts.get(room_id, 0),
        )
        for room_id in wanted
    }


@dataclass(frozen=True)
class ParticipantRow:
    """A participation with the name of who takes part (an agent's name or a user's email)."""

    participation: RoomParticipant
    name: str


def participant_rows(
    *, session: Session, participations: Sequence[RoomParticipant]
) -> list[ParticipantRow]:
    agents = {
        p.participant_id
        for p in participations
        if p.participant_type == ParticipantType.AGENT.value
    }
    users = {
        p.participant_id for p in participations if p.participant_type == ParticipantType.USER.value
    }
    names = display_names(session=session, agent_ids=agents, user_ids=users)
    return [
        ParticipantRow(p, names.get(p.participant_id, f"(gone) {p.participant_id}"))
        for p in participations
    ]
