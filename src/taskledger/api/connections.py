"""``/api/v1/connections``: open, heartbeat, close and list agent connections."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from taskledger.api.deps import (
    CursorQuery,
    IntId,
    LimitQuery,
    PrincipalDep,
    SessionDep,
)
from taskledger.api.routing import LedgerRoute
from taskledger.enums import ConnectionStatus, Scope
from taskledger.schemas.base import AddressedFilters
from taskledger.schemas.connections import (
    ConnectionClose,
    ConnectionCreate,
    ConnectionPage,
    ConnectionRead,
)
from taskledger.services import connections
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/connections", tags=["connections"], route_class=LedgerRoute)

# Connection ids are 64-bit integers; anything outside that range is a 422, not a database error.
ConnectionId = IntId
_ENDED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The connection is closed or timed out"}
}


@router.post("", response_model=ConnectionRead, status_code=status.HTTP_201_CREATED)
def open_connection(
    body: ConnectionCreate, principal: PrincipalDep, session: SessionDep
) -> ConnectionRead:
    """Open an `active` connection for an agent; this counts as its first heartbeat."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        connection = connections.open_connection(session=session, project=project, data=body)
        return ConnectionRead.model_validate(connection)


@router.get("", response_model=ConnectionPage)
def list_connections(
    principal: PrincipalDep,
    session: SessionDep,
    where: Annotated[AddressedFilters[ConnectionStatus], Query()],
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ConnectionPage:
    """The project's connections, oldest first."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=where.project_id, need=Scope.READ
        )
        rows, next_cursor = connections.list_connections(
            session=session,
            project_id=project.id,
            status=where.status,
            agent_id=where.agent_id,
            session_id=where.session_id,
            limit=limit,
            cursor=cursor,
        )
        return ConnectionPage(
            items=[ConnectionRead.model_validate(c) for c in rows], next_cursor=next_cursor
        )


@router.get("/{connection_id}", response_model=ConnectionRead)
def get_connection(
    connection_id: ConnectionId, principal: PrincipalDep, session: SessionDep
) -> ConnectionRead:
    with session.begin():
        return ConnectionRead.model_validate(
            connections.get_connection(
                session=session, principal=principal, connection_id=connection_id, need=Scope.READ
            )
        )


@router.post("/{connection_id}/heartbeat", response_model=ConnectionRead, responses=_ENDED)
def heartbeat(
    connection_id: ConnectionId, principal: PrincipalDep, session: SessionDep
) -> ConnectionRead:
    """Record a heartbeat on the connection and its agent (`offline` agents become `online`)."""
    with session.begin():
        connection = connections.get_connection(
            session=session,
            principal=principal,
            connection_id=connection_id,
            need=Scope.WRITE,
            lock=False,
        )
        connections.heartbeat(session=session, connection=connection)
        return ConnectionRead.model_validate(connection)


@router.post("/{connection_id}/close", response_model=ConnectionRead, responses=_ENDED)
def close_connection(
    connection_id: ConnectionId, body: ConnectionClose, principal: PrincipalDep, session: SessionDep
) -> ConnectionRead:
    """Close the connection with a reason; an `online` agent with no other goes `offline`."""
    with session.begin():
        connection = connections.get_connection(
            session=session, principal=principal, connection_id=connection_id, need=Scope.WRITE
        )
        connections.close_connection(session=session, connection=connection, reason=body.reason)
        return ConnectionRead.model_validate(connection)
