"""Agents: create, list with filters, read, change and delete the workers of a project."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from taskledger.enums import AgentStatus, Scope
from taskledger.errors import ConflictError
from taskledger.schemas.agents import AgentCreate, AgentUpdate
from taskledger.services.access import Principal
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import load_for
from taskledger.store.models import Agent, Project

AGENTS_KEYSET = Keyset("agents", (Agent.created_at, Agent.id), descending=False)


def _require_free_name(*, session: Session, project_id: uuid.UUID, name: str) -> None:
    taken = session.scalar(
        select(exists().where(Agent.project_id == project_id, Agent.name == name))
    )
    if taken:
        raise ConflictError(f"An agent named {name!r} already exists in this project.")


def create_agent(*, session: Session, project: Project, data: AgentCreate) -> Agent:
    """Create an agent in ``project``; 409 when the name is taken there."""
    _require_free_name(session=session, project_id=project.id, name=data.name)
    agent = Agent(
        project_id=project.id,
        name=data.name,
        nickname=data.nickname,
        agent_type=data.agent_type,
        status=data.status.value,
        capabilities=list(data.capabilities),
        config=data.config,
        is_active=data.is_active,
    )
    session.add(agent)
    session.flush()
    return agent


def list_agents(
    *,
    session: Session,
    project_id: uuid.UUID,
    status: AgentStatus | None = None,
    is_active: bool | None = None,
    agent_type: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Agent], str | None]:
    """One page of the project's agents, oldest first, optionally filtered."""
    stmt = select(Agent).where(Agent.project_id == project_id)
    if status is not None:
        stmt = stmt.where(Agent.status == status.value)
    if is_active is not None:
        stmt = stmt.where(Agent.is_active.is_(is_active))
    if agent_type is not None:
        stmt = stmt.where(Agent.agent_type == agent_type)
    filters = {
        "project_id": str(project_id),
        "status": status,
        "is_active": is_active,
        "agent_type": agent_type,
    }
    return paginate(
        session=session,
        stmt=stmt,
        keyset=AGENTS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters=filters,
    )


def get_agent(*, session: Session, principal: Principal, agent_id: uuid.UUID, need: Scope) -> Agent:
    """The agent, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session, principal=principal, model=Agent, row_id=agent_id, need=need, label="Agent"
    )


def update_agent(*, session: Session, agent: Agent, changes: AgentUpdate) -> Agent:
    """Apply the fields present in ``changes``; renaming onto a taken name is 409."""
    values = changes.model_dump(exclude_unset=True)
    if "name" in values and values["name"] != agent.name:
        _require_free_name(session=session, project_id=agent.project_id, name=values["name"])
    for name, value in values.items():
        setattr(agent, name, value.value if isinstance(value, StrEnum) else value)
    session.flush()
    return agent


def names_of(
    *, session: Session, project_id: uuid.UUID, agent_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The names of the project's agents among ``agent_ids``, by id."""
    if not agent_ids:
        return {}
    rows = session.execute(
        select(Agent.id, Agent.name).where(
            Agent.project_id == project_id, Agent.id.in_(list(agent_ids))
        )
    ).all()
    return {agent_id: name for agent_id, name in rows}
