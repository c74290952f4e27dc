"""Legal holds: a held project, agent, task, run, session or room (and every row beneath it) is
never touched by any retention rule or delete path.

A held room keeps its participations and its tasks (and so their ``room_id``).

Holds are few and admin-made, so the planner loads the active ones once and turns them into
plain ``IN`` conditions: the same SQL on SQLite and PostgreSQL, and cheap to evaluate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from taskledger.enums import HoldScope
from taskledger.errors import ConflictError, NotFoundError
from taskledger.services.pagination import Keyset, paginate
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Project,
    RetentionHold,
    Room,
    RoomParticipant,
    Run,
    Task,
)
from taskledger.store.types import utcnow

HOLDS_KEYSET = Keyset(
    "retention_holds", (RetentionHold.created_at, RetentionHold.id), descending=True
)
_TARGETS: Mapping[HoldScope, Any] = {
    HoldScope.PROJECT: Project,
    HoldScope.AGENT: Agent,
    HoldScope.TASK: Task,
    HoldScope.RUN: Run,
    HoldScope.SESSION: AgentSession,
    HoldScope.ROOM: Room,
}


def normalise_target(scope: HoldScope, target_id: str) -> str:
    """The canonical text of a hold's target: an integer for runs, a dashed UUID otherwise.

    Raises:
        NotFoundError: ``target_id`` cannot name a record of ``scope``.
    """
    try:
        if scope is HoldScope.RUN:
            return str(int(target_id))
        return str(uuid.UUID(str(target_id)))
    except ValueError:
        raise NotFoundError(f"No {scope.value} {target_id!r}.") from None


def _typed(scope: HoldScope, target: str) -> Any:
    return int(target) if scope is HoldScope.RUN else uuid.UUID(target)


def add_hold(
    session: Session, *, scope: HoldScope, target_id: str, reason: str, actor: str
) -> RetentionHold:
    """Place a hold on an existing record (404 when it does not exist)."""
    target = normalise_target(scope, target_id)
    if session.get(_TARGETS[scope], _typed(scope, target)) is None:
        raise NotFoundError(f"No {scope.value} {target_id}.")
    hold = RetentionHold(
        scope=scope.value, target_id=target, reason=reason, created_by=actor, created_at=utcnow()
    )
    session.add(hold)
    session.flush()
    return hold


def release_hold(session: Session, *, hold_id: int, actor: str) -> RetentionHold:
    """Release a hold; its rows become eligible again. Releasing twice is a 409."""
    hold = session.get(RetentionHold, hold_id)
    if hold is None:
        raise NotFoundError("Hold not found.")
    if hold.released_at is not None:
        raise ConflictError(f"Hold {hold_id} was already released at {hold.released_at}.")
    hold.released_at = utcnow()
    hold.released_by = actor
    session.flush()
    return hold


def list_holds(
    session: Session, *, active_only: bool, limit: int, cursor: str | None
) -> tuple[list[RetentionHold], str | None]:
    """One page of holds, newest first."""
    stmt = select(RetentionHold)
    if active_only:
        stmt = stmt.where(RetentionHold.released_at.is_(None))
    return paginate(
        session=session,
        stmt=stmt,
        keyset=HOLDS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"active": active_only},
    )


@dataclass(frozen=True)
class HeldSet:
    """The targets of every active hold, by scope, as typed ids."""

    targets: Mapping[HoldScope, frozenset[Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.targets.values())

    def ids(self, scope: HoldScope) -> frozenset[Any]:
        return self.targets.get(scope, frozenset())

    def held(self, table: str) -> ColumnElement[bool]:
        """A condition true for the rows of ``table`` that some hold protects."""
        # A NULL reference is held by nothing: without the IS NOT NULL, ``NULL IN (...)`` is
        # NULL, and ``NOT held`` would keep an unattached row (a task in no room) out of a rule.
        conditions = [
            and_(column.is_not(None), column.in_(sorted(ids, key=str)))
            for scope, column in _columns(table)
            if (ids := self.ids(scope))
        ]
        conditions.extend(self._via_instruction(table))
        conditions.extend(self._via_dependents(table))
        return or_(*conditions) if conditions else false()

    def _via_instruction(self, table: str) -> list[ColumnElement[bool]]:
        # An acknowledgement is part of its instruction: held with the instruction's agent or
        # session too.
        if table != "acknowledgements":
            return []
        parents = [
            column.in_(sorted(ids, key=str))
            for scope, column in (
                (HoldScope.AGENT, Instruction.agent_id),
                (HoldScope.SESSION, Instruction.session_id),
            )
            if (ids := self.ids(scope))
        ]
        if not parents:
            return []
        return [Acknowledgement.instruction_id.in_(select(Instruction.id).where(or_(*parents)))]

    def _via_dependents(self, table: str) -> list[ColumnElement[bool]]:
        # A run of a held task, or a connection of a held session, is covered by _columns; a task
        # assigned to a held agent is held too.
        if table != "tasks" or not (ids := self.ids(HoldScope.AGENT)):
            return []
        return [
            and_(
                Task.assigned_to.is_not(None),
                Task.assigned_to_type.is_not(None),
                Task.assigned_to_type == "agent",
                Task.assigned_to.in_(sorted(ids, key=str)),
            )
        ]

    def held_children(self, table: str) -> ColumnElement[bool]:
        """Rows of ``table`` whose deletion would change or remove a held row elsewhere: a task a
        held run points at, a session of a held connection or instruction, an instruction with
        a held acknowledgement. Delete rules leave them alone."""
        if not self:
            return false()
        links = _CHILD_LINKS.get(table, [])
        return or_(
            false(),
            *[
                parent.in_(select(child).where(child.is_not(None), self.held(child_table)))
                for parent, child, child_table in links
            ],
        )

    def covers(self, table: str, row: Mapping[str, Any]) -> bool:
        """Whether one row (column name to value) is protected, without a query."""
        return any(
            row.get(column.key) in ids
            for scope, column in _columns(table)
            if (ids := self.ids(scope))
        ) or (
            table == "tasks"
            and row.get("assigned_to_type") == "agent"
            and row.get("assigned_to") in self.ids(HoldScope.AGENT)
        )


# (parent key, child column, child table): children that deleting a parent row would touch.
_CHILD_LINKS: dict[str, list[tuple[Any, Any, str]]] = {
    "tasks": [(Task.id, Run.task_id, "runs")],
    "agent_sessions": [
        (AgentSession.id, AgentConnection.session_id, "agent_connections"),
        (AgentSession.id, Instruction.session_id, "instructions"),
    ],
    "instructions": [(Instruction.id, Acknowledgement.instruction_id, "acknowledgements")],
    "agents": [
        (Agent.id, AgentSession.agent_id, "agent_sessions"),
        (Agent.id, AgentConnection.agent_id, "agent_connections"),
        (Agent.id, Run.agent_id, "runs"),
        (Agent.id, Instruction.agent_id, "instructions"),
        (Agent.id, Acknowledgement.agent_id, "acknowledgements"),
        (Agent.id, Task.assigned_to, "tasks"),
        (Agent.id, RoomParticipant.participant_id, "room_participants"),
    ],
    "rooms": [
        (Room.id, Task.room_id, "tasks"),
        (Room.id, RoomParticipant.room_id, "room_participants"),
    ],
}


def _columns(table: str) -> list[tuple[HoldScope, Any]]:
    """Which column of ``table`` each hold scope applies to."""
    return _HOLD_COLUMNS[table]


_HOLD_COLUMNS: dict[str, list[tuple[HoldScope, Any]]] = {
    "runs": [
        (HoldScope.RUN, Run.id),
        (HoldScope.PROJECT, Run.project_id),
        (HoldScope.AGENT, Run.agent_id),
        (HoldScope.TASK, Run.task_id),
    ],
    "tasks": [
        (HoldScope.TASK, Task.id),
        (HoldScope.PROJECT, Task.project_id),
        (HoldScope.ROOM, Task.room_id),
    ],
    "agent_sessions": [
        (HoldScope.SESSION, AgentSession.id),
        (HoldScope.PROJECT, AgentSession.project_id),
        (HoldScope.AGENT, AgentSession.agent_id),
    ],
    "agent_connections": [
        (HoldScope.PROJECT, AgentConnection.project_id),
        (HoldScope.AGENT, AgentConnection.agent_id),
        (HoldScope.SESSION, AgentConnection.session_id),
    ],
    "instructions": [
        (HoldScope.PROJECT, Instruction.project_id),
        (HoldScope.AGENT, Instruction.agent_id),
        (HoldScope.SESSION, Instruction.session_id),
    ],
    "acknowledgements": [
        (HoldScope.PROJECT, Acknowledgement.project_id),
        (HoldScope.AGENT, Acknowledgement.agent_id),
    ],
    "agents": [(HoldScope.AGENT, Agent.id), (HoldScope.PROJECT, Agent.project_id)],
    "rooms": [(HoldScope.ROOM, Room.id), (HoldScope.PROJECT, Room.project_id)],
    "room_participants": [
        (HoldScope.ROOM, RoomParticipant.room_id),
        (HoldScope.PROJECT, RoomParticipant.project_id),
    ],
}


def active_holds(session: Session) -> HeldSet:
    """Every active hold, loaded once."""
    targets: dict[HoldScope, set[Any]] = {}
    rows = session.execute(
        select(RetentionHold.scope, RetentionHold.target_id).where(
            RetentionHold.released_at.is_(None)
        )
    )
    for scope_text, target in rows:
        scope = HoldScope(scope_text)
        targets.setdefault(scope, set()).add(_typed(scope, target))
    return HeldSet({scope: frozenset(ids) for scope, ids in targets.items()})
