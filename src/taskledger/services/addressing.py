"""What connections and instructions share: each is addressed to an agent of a project, and
maybe to one of that agent's sessions, and each lists by project, status, agent and session.

Used by :mod:`taskledger.services.connections` and :mod:`taskledger.services.instructions`.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskledger.enums import SessionStatus
from taskledger.errors import ConflictError, ValidationFailed
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import require_in_project
from taskledger.store.models import Agent, AgentConnection, AgentSession, Instruction, Project

Addressed = TypeVar("Addressed", AgentConnection, Instruction)


def check_addressee(
    *, session: Session, project: Project, agent_id: uuid.UUID, session_id: uuid.UUID | None
) -> None:
    """Check that a new record of ``project`` may be addressed to this agent and session.

    Raises:
        NotFoundError: the agent or session is not in ``project``.
        ValidationFailed: the session belongs to another agent.
        ConflictError: the session has ended.
    """
    require_in_project(
        session=session, model=Agent, row_id=agent_id, project_id=project.id, label="Agent"
    )
    if session_id is None:
        return
    agent_session = require_in_project(
        session=session,
        model=AgentSession,
        row_id=session_id,
        project_id=project.id,
        label="Session",
    )
    if agent_session.agent_id != agent_id:
        raise ValidationFailed("The session belongs to another agent.")
    if agent_session.status != SessionStatus.ACTIVE.value:
        raise ConflictError(f"The session has ended ({agent_session.status}).")


def list_addressed(
    *,
    session: Session,
    model: type[Addressed],
    keyset: Keyset,
    project_id: uuid.UUID,
    status: StrEnum | None,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Addressed], str | None]:
    """One page of the project's records of ``model``, in ``keyset`` order, filtered by status,
    agent and session when given."""
    stmt = select(model).where(model.project_id == project_id)
    if status is not None:
        stmt = stmt.where(model.status == status.value)
    if agent_id is not None:
        stmt = stmt.where(model.agent_id == agent_id)
    if session_id is not None:
        stmt = stmt.where(model.session_id == session_id)
    filters = {
        "project_id": str(project_id),
        "status": status,
        "agent_id": agent_id,
        "session_id": session_id,
    }
    return paginate(
        session=session, stmt=stmt, keyset=keyset, limit=limit, cursor=cursor, filters=filters
    )
