"""``/api/v1/agents``: create, list, read, change and delete a project's agents."""

from __future__ import annotations

import uuid
from typing import Annotated

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
from taskledger.enums import AgentStatus, Scope
from taskledger.schemas.agents import AgentCreate, AgentPage, AgentRead, AgentUpdate
from taskledger.schemas.limits import QueryFlag
from taskledger.services import agents
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], route_class=LedgerRoute)


@router.post(
    "",
    response_model=AgentRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "The name is taken in this project"}},
)
def create_agent(body: AgentCreate, principal: PrincipalDep, session: SessionDep) -> AgentRead:
    """Register an agent; its name must be unique within the project."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        return AgentRead.model_validate(
            agents.create_agent(session=session, project=project, data=body)
        )


@router.get("", response_model=AgentPage)
def list_agents(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    status: AgentStatus | None = None,
    is_active: Annotated[QueryFlag | None, Query()] = None,
    agent_type: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> AgentPage:
    """The project's agents, oldest first."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = agents.list_agents(
            session=session,
            project_id=project.id,
            status=status,
            is_active=is_active,
            agent_type=agent_type,
            limit=limit,
            cursor=cursor,
        )
        return AgentPage(items=[AgentRead.model_validate(a) for a in rows], next_cursor=next_cursor)


@router.get("/{agent_id}", response_model=AgentRead)
def get_agent(agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> AgentRead:
    with session.begin():
        return AgentRead.model_validate(
            agents.get_agent(
                session=session, principal=principal, agent_id=agent_id, need=Scope.READ
            )
        )


@router.patch("/{agent_id}", response_model=AgentRead)
def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, principal: PrincipalDep, session: SessionDep
) -> AgentRead:
    """Change any of the agent's fields; omitted fields stay as they are."""
    with session.begin():
        agent = agents.get_agent(
            session=session, principal=principal, agent_id=agent_id, need=Scope.WRITE
        )
        return AgentRead.model_validate(
            agents.update_agent(session=session, agent=agent, changes=body)
        )


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "A retention hold protects the agent or its records"}},
)
def delete_agent(
    agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, state: StateDep
) -> Response:
    """Delete the agent with its keys, sessions and connections; its history stays, unattributed.

    Everything the delete takes or changes is archived first, the delete is audited and counted
    by the spike guard, and a hold on the agent or on any of its records refuses it (409)."""
    with session.begin():
        agents.get_agent(session=session, principal=principal, agent_id=agent_id, need=Scope.WRITE)
    state.delete_records("agents", [agent_id], actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
