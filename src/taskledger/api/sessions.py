"""``/api/v1/sessions``: start, list, read and end agent sessions."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, ProjectQuery, SessionDep
from taskledger.api.routing import LedgerRoute
from taskledger.enums import Scope, SessionStatus
from taskledger.schemas.sessions import SessionCreate, SessionEnd, SessionPage, SessionRead
from taskledger.services import sessions
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], route_class=LedgerRoute)


@router.post("", response_model=SessionRead, status_code=status.HTTP_201_CREATED)
def create_session(
    body: SessionCreate, principal: PrincipalDep, session: SessionDep
) -> SessionRead:
    """Start an `active` session for an agent of the project."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        return SessionRead.model_validate(
            sessions.create_session(session=session, project=project, data=body)
        )


@router.get("", response_model=SessionPage)
def list_sessions(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    agent_id: uuid.UUID | None = None,
    status: SessionStatus | None = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> SessionPage:
    """The project's sessions, oldest first."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=project_id, need=Scope.READ
        )
        rows, next_cursor = sessions.list_sessions(
            session=session,
            project_id=project.id,
            agent_id=agent_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return SessionPage(
            items=[SessionRead.model_validate(s) for s in rows], next_cursor=next_cursor
        )


@router.get("/{session_id}", response_model=SessionRead)
def get_session(session_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> SessionRead:
    with session.begin():
        return SessionRead.model_validate(
            sessions.get_session(
                session=session, principal=principal, session_id=session_id, need=Scope.READ
            )
        )


@router.post(
    "/{session_id}/end",
    response_model=SessionRead,
    responses={409: {"description": "The session has ended already"}},
)
def end_session(
    session_id: uuid.UUID, body: SessionEnd, principal: PrincipalDep, session: SessionDep
) -> SessionRead:
    """End the session as `completed`, `terminated` or `error`, at `ended_at` (default now)."""
    with session.begin():
        agent_session = sessions.get_session(
            session=session, principal=principal, session_id=session_id, need=Scope.WRITE
        )
        sessions.end_session(
            session=session, agent_session=agent_session, status=body.status, ended_at=body.ended_at
        )
        return SessionRead.model_validate(agent_session)
