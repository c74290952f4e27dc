"""Instructions to agents: send, list, read, change status; and their acknowledgements."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskledger.enums import InstructionStatus, Scope
from taskledger.errors import PermissionDenied
from taskledger.schemas.instructions import (
    AcknowledgementCreate,
    InstructionCreate,
    InstructionUpdate,
)
from taskledger.services.access import Principal
from taskledger.services.addressing import check_addressee, list_addressed
from taskledger.services.pagination import Keyset, paginate
from taskledger.services.scoping import load_for
from taskledger.store.models import Acknowledgement, Instruction, Project

INSTRUCTIONS_KEYSET = Keyset(
    "instructions", (Instruction.created_at, Instruction.id), descending=False
)
# Integer keys grow with insertion, so the key alone is a unique creation order.
ACKNOWLEDGEMENTS_KEYSET = Keyset("acknowledgements", (Acknowledgement.id,), descending=False)


def create_instruction(
    *, session: Session, project: Project, data: InstructionCreate
) -> Instruction:
    """Send a ``pending`` instruction to an agent of ``project``.

    Raises:
        NotFoundError: the agent or session is not in ``project``.
        ValidationFailed: the session belongs to another agent.
        ConflictError: the session has ended.
    """
    check_addressee(
        session=session, project=project, agent_id=data.agent_id, session_id=data.session_id
    )
    instruction = Instruction(
        project_id=project.id,
        agent_id=data.agent_id,
        session_id=data.session_id,
        payload=data.payload,
        metadata_=data.metadata,
        status=InstructionStatus.PENDING.value,
        expires_at=data.expires_at,
    )
    session.add(instruction)
    session.flush()
    return instruction


def list_instructions(
    *,
    session: Session,
    project_id: uuid.UUID,
    status: InstructionStatus | None = None,
    agent_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Instruction], str | None]:
    """One page of the project's instructions, oldest first."""
    return list_addressed(
        session=session,
        model=Instruction,
        keyset=INSTRUCTIONS_KEYSET,
        project_id=project_id,
        status=status,
        agent_id=agent_id,
        session_id=session_id,
        limit=limit,
        cursor=cursor,
    )


def get_instruction(
    *,
    session: Session,
    principal: Principal,
    instruction_id: uuid.UUID,
    need: Scope,
    lock: bool | None = None,
) -> Instruction:
    """The instruction, if the caller may do ``need`` on it (404 when not theirs to see)."""
    return load_for(
        session=session,
        principal=principal,
        model=Instruction,
        row_id=instruction_id,
        need=need,
        label="Instruction",
        lock=lock,
    )


def update_instruction(
    *, session: Session, instruction: Instruction, changes: InstructionUpdate
) -> Instruction:
    """Set the status and/or the metadata given in ``changes``.

    Any status may follow any other: instructions have no lifecycle rules in SPEC, and the
    retention engine expires them on its own schedule.
    """
    values: dict[str, Any] = changes.model_dump(exclude_unset=True)
    if "status" in values:
        instruction.status = InstructionStatus(values["status"]).value
    if "metadata" in values:
        instruction.metadata_ = values["metadata"]
    session.flush()
    return instruction


def acknowledge(
    *,
    session: Session,
    principal: Principal,
    instruction: Instruction,
    data: AcknowledgementCreate,
) -> Acknowledgement:
    """Record an acknowledgement of ``instruction``.

    A key bound to an agent speaks for that agent only: it may acknowledge the instructions
    addressed to its agent and no others. Other writers acknowledge on behalf of the
    instruction's agent.

    Raises:
        PermissionDenied: an agent-bound key acknowledging another agent's instruction.
    """
    if principal.agent_id is not None and principal.agent_id != instruction.agent_id:
        raise PermissionDenied(
            "This key is bound to another agent; it may acknowledge only its own instructions."
        )
    acknowledgement = Acknowledgement(
        project_id=instruction.project_id,
        instruction_id=instruction.id,
        agent_id=principal.agent_id or instruction.agent_id,
        status=data.status.value,
        message=data.message,
    )
    session.add(acknowledgement)
    session.flush()
    return acknowledgement


def list_acknowledgements(
    *, session: Session, instruction_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Acknowledgement], str | None]:
    """One page of the instruction's acknowledgements, oldest first."""
    stmt = select(Acknowledgement).where(Acknowledgement.instruction_id == instruction_id)
    return paginate(
        session=session,
        stmt=stmt,
        keyset=ACKNOWLEDGEMENTS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"instruction_id": str(instruction_id)},
    )


#: At most this many acknowledgements are shown for one page of instructions.
ACKNOWLEDGEMENTS_SHOWN = 1000


def acknowledgements_of(
    *, session: Session, instruction_ids: Collection[uuid.UUID], limit: int = ACKNOWLEDGEMENTS_SHOWN
) -> dict[uuid.UUID, list[Acknowledgement]]:
    """The acknowledgements of several instructions at once (oldest first, ``limit`` in all),
    by instruction; an instruction without any is absent."""
    if not instruction_ids:
        return {}
    rows = session.scalars(
        select(Acknowledgement)
        .where(Acknowledgement.instruction_id.in_(list(instruction_ids)))
        .order_by(Acknowledgement.id)
        .limit(limit)
    )
    found: dict[uuid.UUID, list[Acknowledgement]] = {}
    for row in rows:
        found.setdefault(row.instruction_id, []).append(row)
    return found
