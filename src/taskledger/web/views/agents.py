"""The Agents page: a project's agents with their status, last heartbeat (red past the
connection cleanup window) and open connections; an agent's connections, sessions, and
instructions with their acknowledgements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request, Response

from taskledger.enums import ConnectionStatus, Scope
from taskledger.retention.policy.load import load_policy
from taskledger.retention.policy.rules import PolicyError
from taskledger.services import agents, connections, instructions, sessions
from taskledger.services.connections import StaleWindow
from taskledger.store.models import Agent, AgentConnection
from taskledger.store.types import utcnow
from taskledger.web.deps import (
    PrincipalDep,
    ProjectDep,
    ProjectRef,
    SessionDep,
    StateDep,
    choose_project,
)
from taskledger.web.pages import page_router, pages_of

router = page_router()

#: Rows per table; each table pages on with its own cursor.
PAGE_SIZE = 50
CursorParam = Annotated[str | None, Query(max_length=2048, description="Where the page starts.")]


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    open_connections: int
    stale: bool


@dataclass(frozen=True)
class ConnectionRow:
    connection: AgentConnection
    heartbeat: datetime | None
    stale: bool


def stale_window_for(state: StateDep, project: ProjectRef) -> StaleWindow:
    """The window of the policy in force (``TASKLEDGER_RETENTION_POLICY``); a policy that cannot
    be loaded leaves the ``default`` preset's, as a policy without a connection rule does."""
    try:
        policy = load_policy(state.settings.retention.policy)
    except PolicyError:
        policy = None
    return connections.stale_window(policy, project_id=project.id, project_name=project.name)


@router.get("/agents")
def agents_page(
    request: Request,
    choice: ProjectDep,
    session: SessionDep,
    state: StateDep,
    cursor: CursorParam = None,
) -> Response:
    context: dict[str, Any] = {"page": "agents", "choice": choice, "rows": [], "next_cursor": None}
    project = choice.current
    if project is not None:
        window = stale_window_for(state, project)
        now = utcnow()
        with session.begin():
            found, next_cursor = agents.list_agents(
                session=session, project_id=project.id, limit=PAGE_SIZE, cursor=cursor
            )
            counts = connections.open_counts(session=session, agent_ids=[a.id for a in found])
        context["rows"] = [
            AgentRow(a, counts.get(a.id, 0), window.is_stale(a.last_heartbeat_at, now))
            for a in found
        ]
        context.update(next_cursor=next_cursor, window=window, cursor=cursor)
    return pages_of(request).render(request, "agents.html", context)


@router.get("/agents/{agent_id}")
def agent_page(
    request: Request,
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    state: StateDep,
    connections_cursor: CursorParam = None,
    sessions_cursor: CursorParam = None,
    instructions_cursor: CursorParam = None,
) -> Response:
    with session.begin():
        agent = agents.get_agent(
            session=session, principal=principal, agent_id=agent_id, need=Scope.READ
        )
        open_found, next_connections = connections.list_connections(
            session=session,
            project_id=agent.project_id,
            agent_id=agent.id,
            status=ConnectionStatus.ACTIVE,
            limit=PAGE_SIZE,
            cursor=connections_cursor,
        )
        session_rows, next_sessions = sessions.list_sessions(
            session=session,
            project_id=agent.project_id,
            agent_id=agent.id,
            limit=PAGE_SIZE,
            cursor=sessions_cursor,
        )
        instruction_rows, next_instructions = instructions.list_instructions(
            session=session,
            project_id=agent.project_id,
            agent_id=agent.id,
            limit=PAGE_SIZE,
            cursor=instructions_cursor,
        )
        acks = instructions.acknowledgements_of(
            session=session, instruction_ids=[i.id for i in instruction_rows]
        )
    choice = choose_project(request, state, project=agent.project_id)
    assert choice.current is not None  # the agent's project, which the caller may see
    window = stale_window_for(state, choice.current)
    now = utcnow()
    connection_rows = []
    for connection in open_found:
        heartbeat = connection.last_heartbeat_at or connection.created_at
        connection_rows.append(
            ConnectionRow(connection, heartbeat, window.is_stale(heartbeat, now))
        )
    cursors = {
        "connections_cursor": connections_cursor,
        "sessions_cursor": sessions_cursor,
        "instructions_cursor": instructions_cursor,
    }
    context = {
        "page": "agents",
        "choice": choice,
        "agent": agent,
        "stale": window.is_stale(agent.last_heartbeat_at, now),
        "window": window,
        "connections": connection_rows,
        "sessions": session_rows,
        "instructions": instruction_rows,
        "acks": acks,
        "next": {
            "connections_cursor": next_connections,
            "sessions_cursor": next_sessions,
            "instructions_cursor": next_instructions,
        },
        "cursors": cursors,
    }
    return pages_of(request).render(request, "agent_detail.html", context)
