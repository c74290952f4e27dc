"""What deleting rows takes with it elsewhere: captured before the delete, so it is archived too.

The database's foreign keys cascade (``ON DELETE CASCADE``: rows that go with the deleted ones)
or empty references (``ON DELETE SET NULL``: rows that stay, unlinked). The executor archives
both kinds in parts of their own (actions ``cascade`` and ``unlink``) before a delete, so that
restore can put them back; what no foreign key does (an agent's tasks name their assignee, and
its room participations the participant, without one) is applied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, delete, select, update

from taskledger.enums import AssigneeType, PartAction
from taskledger.store.models import (
    Acknowledgement,
    AgentConnection,
    AgentSession,
    ApiKey,
    Instruction,
    RoomParticipant,
    Run,
    Task,
    TaskDependency,
)


@dataclass
class SideEffect:
    """Rows of another table that a delete takes with it (``cascade``) or unlinks (``unlink``)."""

    table: Table
    rows: list[dict[str, Any]]
    action: PartAction  # CASCADE or UNLINK
    key_column: str


def table_of(model: Any) -> Table:
    """The table of an ORM model, typed."""
    table: Table = model.__table__
    return table


def fetch_rows(conn: Connection, stmt: Any) -> list[dict[str, Any]]:
    """The rows ``stmt`` selects, as plain dicts."""
    return [dict(row) for row in conn.execute(stmt).mappings().all()]


def _unlink_rows(
    conn: Connection, model: Any, column: str, keys: Sequence[Any]
) -> list[dict[str, Any]]:
    t = table_of(model)
    return fetch_rows(
        conn, select(t.c.id, t.c[column]).where(t.c[column].in_(keys)).order_by(t.c.id)
    )


#: Tables whose deletes take or change rows elsewhere (see :func:`capture_side_effects`).
SIDE_EFFECTS = frozenset({"tasks", "agent_sessions", "instructions", "agents", "rooms"})


def capture_side_effects(conn: Connection, table: str, keys: Sequence[Any]) -> list[SideEffect]:
    """Rows that deleting ``keys`` of ``table`` would take with it (ON DELETE CASCADE) or change
    (ON DELETE SET NULL), so that they are archived too and restore can put them back."""
    extras: list[SideEffect] = []
    if table not in SIDE_EFFECTS:
        return extras
    if table == "tasks":
        deps = table_of(TaskDependency)
        edges = fetch_rows(
            conn,
            select(deps)
            .where(deps.c.task_id.in_(keys) | deps.c.depends_on_id.in_(keys))
            .order_by(deps.c.task_id, deps.c.depends_on_id),
        )
        extras.append(SideEffect(deps, edges, PartAction.CASCADE, "task_id"))
        extras.append(
            SideEffect(
                table_of(Run), _unlink_rows(conn, Run, "task_id", keys), PartAction.UNLINK, "id"
            )
        )
    elif table == "agent_sessions":
        for model in (AgentConnection, Instruction):
            rows = _unlink_rows(conn, model, "session_id", keys)
            extras.append(SideEffect(table_of(model), rows, PartAction.UNLINK, "id"))
    elif table == "instructions":
        acks = table_of(Acknowledgement)
        rows = fetch_rows(
            conn, select(acks).where(acks.c.instruction_id.in_(keys)).order_by(acks.c.id)
        )
        extras.append(SideEffect(acks, rows, PartAction.CASCADE, "id"))
    elif table == "agents":
        extras.extend(_agent_side_effects(conn, keys))
    elif table == "rooms":
        people = table_of(RoomParticipant)
        rows = fetch_rows(
            conn, select(people).where(people.c.room_id.in_(keys)).order_by(people.c.id)
        )
        extras.append(SideEffect(people, rows, PartAction.CASCADE, "id"))
        tasks = table_of(Task)
        rows = _unlink_rows(conn, Task, "room_id", keys)
        extras.append(SideEffect(tasks, rows, PartAction.UNLINK, "id"))
    return [extra for extra in extras if extra.rows]


def _agent_side_effects(conn: Connection, keys: Sequence[Any]) -> list[SideEffect]:
    """An agent takes its keys, sessions, connections and room participations with it, and
    leaves its history (runs, instructions, acknowledgements, task assignments) unattributed."""
    extras = []
    for model in (ApiKey, AgentSession, AgentConnection):
        t = table_of(model)
        rows = fetch_rows(conn, select(t).where(t.c.agent_id.in_(keys)).order_by(t.c.id))
        extras.append(SideEffect(t, rows, PartAction.CASCADE, "id"))
    people = table_of(RoomParticipant)
    rows = fetch_rows(
        conn, select(people).where(*_agent_participations(keys)).order_by(people.c.id)
    )
    extras.append(SideEffect(people, rows, PartAction.CASCADE, "id"))
    sessions = select(AgentSession.id).where(AgentSession.agent_id.in_(keys))
    others = table_of(AgentConnection)
    extras.append(
        SideEffect(
            others,
            fetch_rows(
                conn,
                select(others.c.id, others.c.session_id)
                .where(others.c.session_id.in_(sessions), others.c.agent_id.not_in(keys))
                .order_by(others.c.id),
            ),
            PartAction.UNLINK,
            "id",
        )
    )
    instructions = table_of(Instruction)
    extras.append(
        SideEffect(
            instructions,
            fetch_rows(
                conn,
                select(instructions.c.id, instructions.c.agent_id, instructions.c.session_id)
                .where(instructions.c.agent_id.in_(keys) | instructions.c.session_id.in_(sessions))
                .order_by(instructions.c.id),
            ),
            PartAction.UNLINK,
            "id",
        )
    )
    for attributed in (Run, Acknowledgement):
        rows = _unlink_rows(conn, attributed, "agent_id", keys)
        extras.append(SideEffect(table_of(attributed), rows, PartAction.UNLINK, "id"))
    tasks = table_of(Task)
    assigned = fetch_rows(
        conn,
        select(tasks.c.id, tasks.c.assigned_to, tasks.c.assigned_to_type)
        .where(*_assigned_to_agents(keys))
        .order_by(tasks.c.id),
    )
    extras.append(SideEffect(tasks, assigned, PartAction.UNLINK, "id"))
    return extras


def _assigned_to_agents(keys: Sequence[Any]) -> tuple[Any, ...]:
    return (Task.assigned_to.in_(keys), Task.assigned_to_type == AssigneeType.AGENT.value)


def _agent_participations(keys: Sequence[Any]) -> tuple[Any, ...]:
    return (
        RoomParticipant.participant_id.in_(keys),
        RoomParticipant.participant_type == AssigneeType.AGENT.value,
    )


def apply_side_effects(conn: Connection, table: str, keys: Sequence[Any]) -> None:
    """What deleting ``keys`` of ``table`` changes that no foreign key does: tasks name their
    assignee, and participations their participant, without one, so an agent's tasks are
    unassigned and its participations removed here."""
    if table == "agents":
        conn.execute(delete(RoomParticipant).where(*_agent_participations(keys)))
        conn.execute(
            update(Task)
            .where(*_assigned_to_agents(keys))
            # As a foreign key's SET NULL would: the task's own updated_at stays as it was.
            .values(assigned_to=None, assigned_to_type=None, updated_at=Task.updated_at)
        )
