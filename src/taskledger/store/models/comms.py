"""Agent sessions, connections with heartbeats, instructions and acknowledgements (seed 001)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskledger.enums import (
    AcknowledgementStatus,
    ConnectionStatus,
    InstructionStatus,
    SessionStatus,
)
from taskledger.store.models.base import (
    NEVER_REUSE_KEYS,
    Base,
    Timestamps,
    UuidPrimaryKey,
    one_of,
)
from taskledger.store.types import BigIntPK, JSONType, UTCDateTime, utcnow


class AgentSession(UuidPrimaryKey, Timestamps, Base):
    """A period of work of one agent, with the parameters it ran under."""

    __tablename__ = "agent_sessions"

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=SessionStatus.ACTIVE.value
    )
    experimental_parameters: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)

    __table_args__ = (one_of("status", SessionStatus),)


class AgentConnection(Timestamps, Base):
    """A live link from an agent; kept alive by heartbeats, expired when they stop."""

    __tablename__ = "agent_connections"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agent_sessions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=ConnectionStatus.ACTIVE.value
    )
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    close_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        one_of("status", ConnectionStatus),
        Index("ix_agent_connections_status_last_heartbeat_at", "status", "last_heartbeat_at"),
        NEVER_REUSE_KEYS,
    )


class Instruction(UuidPrimaryKey, Timestamps, Base):
    """A message to an agent. The attribute ``metadata_`` maps to the column ``metadata``."""

    __tablename__ = "instructions"

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # History outlives the agent: deleting an agent keeps its instructions, unattributed.
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agent_sessions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    payload: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    metadata_: Mapped[Any | None] = mapped_column("metadata", JSONType, nullable=True)
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default=InstructionStatus.PENDING.value
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        one_of("status", InstructionStatus),
        Index("ix_instructions_status_created_at", "status", "created_at"),
    )


class Acknowledgement(Base):
    """An agent's answer to an instruction: the audit trail, kept by every preset."""

    __tablename__ = "acknowledgements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    instruction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("instructions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )

    __table_args__ = (one_of("status", AcknowledgementStatus), NEVER_REUSE_KEYS)
