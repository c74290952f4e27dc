"""Agents and the tasks they are given, with the dependency graph between tasks (seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskledger.enums import AgentStatus, AssigneeType, TaskStatus
from taskledger.store.models.base import Base, Timestamps, UuidPrimaryKey, one_of
from taskledger.store.types import JSONType, UTCDateTime


class Agent(UuidPrimaryKey, Timestamps, Base):
    """A persistent agent of one project; its name is unique within the project."""

    __tablename__ = "agents"

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    nickname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    agent_type: Mapped[str] = mapped_column(String(100), nullable=False, default="generic")
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default=AgentStatus.OFFLINE.value, index=True
    )
    capabilities: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, index=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        one_of("status", AgentStatus),
    )


class Task(UuidPrimaryKey, Timestamps, Base):
    """A unit of work, assigned to an agent or a user, that may depend on other tasks."""

    __tablename__ = "tasks"

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(
        String(50), nullable=False, default=TaskStatus.PENDING.value, index=True
    )
    priority: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # Polymorphic (agent or user), so no foreign key: deleting an agent clears it in the service.
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    assigned_to_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    due_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    room_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("rooms.id", ondelete="SET NULL"), nullable=True, index=True
    )
    result: Mapped[Any | None] = mapped_column(JSONType, nullable=True)

    __table_args__ = (
        one_of("status", TaskStatus),
        one_of("assigned_to_type", AssigneeType, nullable=True),
        Index("ix_tasks_project_id_created_at", "project_id", "created_at"),
    )


class TaskDependency(Base):
    """Edge ``task_id`` -> ``depends_on_id``: the task cannot start before the other completes."""

    __tablename__ = "task_dependencies"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    __table_args__ = (CheckConstraint("task_id <> depends_on_id", name="not_self"),)
