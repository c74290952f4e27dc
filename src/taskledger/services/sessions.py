"""Agent sessions: start one for an agent, list and read them, end them once."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskledger.enums import Scope, SessionStatus
from taskledger.errors import ConflictError, ValidationFailed
from taskledger.schemas.sessions import SessionCreate
from taskledger.services.access import Principal
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import load_for, require_in_project
from taskledger.store.models import Agent, AgentSession, Project
from taskledger.store.types import utcnow

SESSIONS_KEYSET = Keyset("sessions", (AgentSession.created_at, AgentSession.id), descending=False)


def create_session(*, session: Session, project: Project, data: SessionCreate) -> AgentSession:
    """Start an ``active`` session for an agent of ``project`` (404 for any other agent)."""
    require_in_project(
        session=session, model=Agent, row_id=data.agent_id, project_id=project.id, label="Agent"
    )
    agent_session = AgentSession(
        project_id=project.id,
        agent_id=data.agent_id,
        status=SessionStatus.ACTIVE.value,
        experimental_parameters=data.experimental_parameters,
    )
    session.add(agent_session)
    session.flush()
    return agent_session


def list_sessions(
    *,
    session: Session,
    project_id: uuid.UUID,
    agent_id: uuid.UUID | None = None,
    status: SessionStatus | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AgentSession], str | None]:
    """One page of the project's sessions, oldest first."""
    stmt = select(AgentSession).where(AgentSession.project_id == project_id)
    if agent_id is not None:
        stmt = stmt.where(AgentSession.agent_id == agent_id)
    if status is not None:
        stmt = stmt.where(AgentSession.status == status.value)
    filters = {"project_id": str(project_id), "agent_id": agent_id, "status": status}
    return paginate(
        session=session,
        stmt=stmt,
        keyset=SESSIONS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters=filters,
    )


def get_session(
    *, session: Session, principal: Principal, session_id: uuid.UUID, need: Scope
) -> AgentSession:
    """The session, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session,
        principal=principal,
        model=AgentSession,
        row_id=session_id,
        need=need,
        label="Session",
    )


def end_session(
    *,
    session: Session,
    agent_session: AgentSession,
    status: SessionStatus,
    ended_at: datetime | None = None,
) -> AgentSession:
    """End an active session as ``status`` at ``ended_at`` (now by default).

    Raises:
        ConflictError: the session has ended already.
        ValidationFailed: ``ended_at`` is before the session began.
    """
    if agent_session.status != SessionStatus.ACTIVE.value:
        raise ConflictError(f"The session has ended already ({agent_session.status}).")
    ended_at = ended_at or utcnow()
    if ended_at < agent_session.created_at:
        raise ValidationFailed("ended_at is before the session began.")
    agent_session.status = status.value
    agent_session.ended_at = ended_at
    session.flush()
    return agent_session
