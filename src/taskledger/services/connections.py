"""Agent connections: open, heartbeat, close, list.

Heartbeats are the hot path: each is one conditional UPDATE of the connection and one of the
agent, with no load-modify-save, so agents may beat often without contention on the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import Session

from taskledger.enums import AgentStatus, ConnectionStatus, Scope
from taskledger.errors import ConflictError
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy
from taskledger.schemas.connections import ConnectionCreate
from taskledger.services.access import Principal
from taskledger.services.addressing import check_addressee, list_addressed
from taskledger.services.pagination import Keyset
from taskledger.services.scoping import load_for
from taskledger.store.models import Agent, AgentConnection, Project
from taskledger.store.types import utcnow

# Integer keys grow with insertion, so the key alone is a unique creation order.
CONNECTIONS_KEYSET = Keyset("connections", (AgentConnection.id,), descending=False)
_ACTIVE = ConnectionStatus.ACTIVE.value


def _agent_alive(*, session: Session, agent_id: uuid.UUID, now: datetime) -> None:
    """Record a sign of life of the agent: one UPDATE; an ``offline`` agent becomes ``online``."""
    session.execute(
        update(Agent)
        .where(Agent.id == agent_id)
        .values(
            last_heartbeat_at=now,
            # busy and error are the agent's own report and stay as they are.
            status=case(
                (Agent.status == AgentStatus.OFFLINE.value, AgentStatus.ONLINE.value),
                else_=Agent.status,
            ),
        )
        .execution_options(synchronize_session="fetch")
    )


def open_connection(
    *, session: Session, project: Project, data: ConnectionCreate
) -> AgentConnection:
    """Open an ``active`` connection for an agent of ``project``; opening counts as a heartbeat.

    Raises:
        NotFoundError: the agent or session is not in ``project``.
        ValidationFailed: the session belongs to another agent.
        ConflictError: the session has ended.
    """
    check_addressee(
        session=session, project=project, agent_id=data.agent_id, session_id=data.session_id
    )
    now = utcnow()
    connection = AgentConnection(
        project_id=project.id,
        agent_id=data.agent_id,
        session_id=data.session_id,
        status=_ACTIVE,
        last_heartbeat_at=now,
    )
    session.add(connection)
    session.flush()
    _agent_alive(session=session, agent_id=data.agent_id, now=now)
    return connection


def list_connections(
    *,
    session: Session,
    project_id: uuid.UUID,
    status: ConnectionStatus | None = None,
    agent_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AgentConnection], str | None]:
    """One page of the project's connections, oldest first."""
    return list_addressed(
        session=session,
        model=AgentConnection,
        keyset=CONNECTIONS_KEYSET,
        project_id=project_id,
        status=status,
        agent_id=agent_id,
        session_id=session_id,
        limit=limit,
        cursor=cursor,
    )


def get_connection(
    *,
    session: Session,
    principal: Principal,
    connection_id: int,
    need: Scope,
    lock: bool | None = None,
) -> AgentConnection:
    """The connection, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session,
        principal=principal,
        model=AgentConnection,
        row_id=connection_id,
        need=need,
        label="Connection",
        lock=lock,
    )


def _refuse_unless_active(connection: AgentConnection) -> None:
    if connection.status != _ACTIVE:
        raise ConflictError(f"The connection is {connection.status}; open a new one.")


def heartbeat(*, session: Session, connection: AgentConnection) -> AgentConnection:
    """Move ``last_heartbeat_at`` to now on the connection and on its agent.

    Raises:
        ConflictError: the connection is closed or timed out (also when that happened between
            loading it and this update).
    """
    _refuse_unless_active(connection)
    now = utcnow()
    result = session.execute(
        update(AgentConnection)
        .where(AgentConnection.id == connection.id, AgentConnection.status == _ACTIVE)
        .values(last_heartbeat_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.refresh(connection)
        _refuse_unless_active(connection)
    _agent_alive(session=session, agent_id=connection.agent_id, now=now)
    return connection


def close_connection(
    *, session: Session, connection: AgentConnection, reason: str
) -> AgentConnection:
    """Close an active connection with ``reason``; 409 when it is closed or timed out already.

    An ``online`` agent left with no active connection goes ``offline``.
    """
    _refuse_unless_active(connection)
    connection.status = ConnectionStatus.CLOSED.value
    connection.closed_at = utcnow()
    connection.close_reason = reason
    session.flush()
    still_connected = exists().where(
        AgentConnection.agent_id == connection.agent_id, AgentConnection.status == _ACTIVE
    )
    session.execute(
        update(Agent)
        .where(
            Agent.id == connection.agent_id,
            Agent.status == AgentStatus.ONLINE.value,
            ~still_connected,
        )
        .values(status=AgentStatus.OFFLINE.value)
        .execution_options(synchronize_session="fetch")
    )
    return connection


def open_counts(*, session: Session, agent_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many active connections each of ``agent_ids`` has (an agent with none is absent)."""
    if not agent_ids:
        return {}
    rows = session.execute(
        select(AgentConnection.agent_id, func.count())
        .where(AgentConnection.agent_id.in_(list(agent_ids)), AgentConnection.status == _ACTIVE)
        .group_by(AgentConnection.agent_id)
    ).all()
    return {agent_id: count for agent_id, count in rows}


@dataclass(frozen=True)
class StaleWindow:
    """How long an active connection may go without a heartbeat before the retention engine's
    cleanup (an ``expire`` rule on ``agent_connections``) times it out: past it, a heartbeat
    is stale."""

    after: timedelta
    #: The rule and policy it comes from.
    rule: str
    policy: str
    #: Whether the policy in force has no such rule, so the ``default`` preset's is used.
    fallback: bool

    def is_stale(self, moment: datetime | None, now: datetime) -> bool:
        """Whether a heartbeat at ``moment`` is older than the window (never beating is not)."""
        return moment is not None and now - moment > self.after


def _cleanup_rules(
    policy: Policy, project_id: uuid.UUID, project_name: str
) -> list[tuple[timedelta, str]]:
    found = []
    for rule in policy.rules:
        if rule.table != "agent_connections" or rule.action != "expire":
            continue
        if rule.statuses is not None and _ACTIVE not in rule.statuses:
            continue
        if rule.projects is not None and not {project_name, str(project_id)} & set(rule.projects):
            continue
        found.append((rule.older_than, rule.name))
    return found


def stale_window(policy: Policy | None, *, project_id: uuid.UUID, project_name: str) -> StaleWindow:
    """The stale-connection window of a project under ``policy`` (the policy in force): the
    shortest ``older_than`` of its rules that expire the project's active connections.

    A policy without such a rule (``ops``), or none at all (it could not be loaded), falls back
    to the ``default`` preset's rule, ``connections-stale`` (24 h).
    """
    if policy is not None:
        rules = _cleanup_rules(policy, project_id, project_name)
        if rules:
            after, name = min(rules)
            return StaleWindow(after=after, rule=name, policy=policy.name, fallback=False)
    default = PRESETS["default"]
    after, name = min(_cleanup_rules(default, project_id, project_name))
    return StaleWindow(after=after, rule=name, policy=default.name, fallback=True)
