"""``/api/v1/instructions``: send instructions to agents, and record their acknowledgements."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, SessionDep
from taskledger.api.routing import LedgerRoute
from taskledger.enums import InstructionStatus, Scope
from taskledger.schemas.base import AddressedFilters
from taskledger.schemas.instructions import (
    AcknowledgementCreate,
    AcknowledgementPage,
    AcknowledgementRead,
    InstructionCreate,
    InstructionPage,
    InstructionRead,
    InstructionUpdate,
)
from taskledger.services import instructions
from taskledger.services.access import resolve_project
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/instructions", tags=["instructions"], route_class=LedgerRoute)


@router.post("", response_model=InstructionRead, status_code=status.HTTP_201_CREATED)
def create_instruction(
    body: InstructionCreate, principal: PrincipalDep, session: SessionDep
) -> InstructionRead:
    """Send a `pending` instruction to an agent of the project."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=body.project_id, need=Scope.WRITE
        )
        instruction = instructions.create_instruction(session=session, project=project, data=body)
        return InstructionRead.model_validate(instruction)


@router.get("", response_model=InstructionPage)
def list_instructions(
    principal: PrincipalDep,
    session: SessionDep,
    where: Annotated[AddressedFilters[InstructionStatus], Query()],
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> InstructionPage:
    """The project's instructions, oldest first."""
    with session.begin():
        project = resolve_project(
            session=session, principal=principal, project_id=where.project_id, need=Scope.READ
        )
        rows, next_cursor = instructions.list_instructions(
            session=session,
            project_id=project.id,
            status=where.status,
            agent_id=where.agent_id,
            session_id=where.session_id,
            limit=limit,
            cursor=cursor,
        )
        return InstructionPage(
            items=[InstructionRead.model_validate(i) for i in rows], next_cursor=next_cursor
        )


@router.get("/{instruction_id}", response_model=InstructionRead)
def get_instruction(
    instruction_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> InstructionRead:
    with session.begin():
        return InstructionRead.model_validate(
            instructions.get_instruction(
                session=session, principal=principal, instruction_id=instruction_id, need=Scope.READ
            )
        )


@router.patch("/{instruction_id}", response_model=InstructionRead)
def update_instruction(
    instruction_id: uuid.UUID, body: InstructionUpdate, principal: PrincipalDep, session: SessionDep
) -> InstructionRead:
    """Set the instruction's status and/or metadata."""
    with session.begin():
        instruction = instructions.get_instruction(
            session=session, principal=principal, instruction_id=instruction_id, need=Scope.WRITE
        )
        instructions.update_instruction(session=session, instruction=instruction, changes=body)
        return InstructionRead.model_validate(instruction)


@router.post(
    "/{instruction_id}/acknowledgements",
    response_model=AcknowledgementRead,
    status_code=status.HTTP_201_CREATED,
    responses={403: {"description": "A key bound to another agent"}},
)
def acknowledge(
    instruction_id: uuid.UUID,
    body: AcknowledgementCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> AcknowledgementRead:
    """Record an acknowledgement; a key bound to an agent may answer only its own instructions."""
    with session.begin():
        instruction = instructions.get_instruction(
            session=session,
            principal=principal,
            instruction_id=instruction_id,
            need=Scope.WRITE,
            lock=False,
        )
        acknowledgement = instructions.acknowledge(
            session=session, principal=principal, instruction=instruction, data=body
        )
        return AcknowledgementRead.model_validate(acknowledgement)


@router.get("/{instruction_id}/acknowledgements", response_model=AcknowledgementPage)
def list_acknowledgements(
    instruction_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> AcknowledgementPage:
    """The instruction's acknowledgements, oldest first."""
    with session.begin():
        instructions.get_instruction(
            session=session, principal=principal, instruction_id=instruction_id, need=Scope.READ
        )
        rows, next_cursor = instructions.list_acknowledgements(
            session=session, instruction_id=instruction_id, limit=limit, cursor=cursor
        )
        return AcknowledgementPage(
            items=[AcknowledgementRead.model_validate(a) for a in rows], next_cursor=next_cursor
        )
