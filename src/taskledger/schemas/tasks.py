"""Tasks: units of work with an assignee, a status lifecycle and dependencies (SPEC section 2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from taskledger.enums import AssigneeType, TaskStatus
from taskledger.schemas.base import Page, PatchModel, ReadModel, StrictModel
from taskledger.schemas.limits import AwareDatetime, Flag, JsonValue

MAX_DEPENDENCIES = 1000

Dependencies = list[uuid.UUID]


class TaskAssign(StrictModel):
    """Give the task to an agent of the project, or to a user who may see the project.

    Both fields `null` unassigns the task.
    """

    assignee_type: AssigneeType | None
    assignee_id: uuid.UUID | None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TaskAssign:
        if (self.assignee_type is None) != (self.assignee_id is None):
            raise ValueError("give both assignee_type and assignee_id, or neither to unassign")
        return self


class TaskCreate(StrictModel):
    """A new task, always `pending`; it may depend on tasks that are not complete yet."""

    title: str = Field(min_length=1, max_length=500)
    description: str | None = None
    priority: str | None = Field(default=None, min_length=1, max_length=50)
    due_date: AwareDatetime | None = None
    result: JsonValue = None
    dependencies: Dependencies = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Ids of tasks of the same project that must complete before this one starts.",
    )
    assignee_type: AssigneeType | None = None
    assignee_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = Field(
        default=None, description="An open room of the same project the task belongs to."
    )
    project_id: uuid.UUID | None = Field(
        default=None, description="Required for users; an API key acts in its own project."
    )

    @model_validator(mode="after")
    def _assignee_pair(self) -> TaskCreate:
        if (self.assignee_type is None) != (self.assignee_id is None):
            raise ValueError("give both assignee_type and assignee_id, or neither")
        return self


class TaskUpdate(PatchModel):
    """Fields to change. Status and assignee have their own routes (`/status`, `/assign`)."""

    not_null = frozenset({"title", "dependencies"})

    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = None
    priority: str | None = Field(default=None, min_length=1, max_length=50)
    due_date: AwareDatetime | None = None
    result: JsonValue = None
    dependencies: Dependencies | None = Field(
        default=None,
        max_length=MAX_DEPENDENCIES,
        description="Replaces the task's dependencies; a cycle is refused with 409.",
    )
    room_id: uuid.UUID | None = Field(
        default=None,
        description="Move the task into an open room of its project; `null` takes it out.",
    )


class TaskStatusChange(StrictModel):
    """Move the task to ``status``, applying the transition rules of SPEC section 2."""

    status: TaskStatus
    reopen: Flag = Field(
        default=False,
        description="Required to leave a terminal status (completed, failed, cancelled).",
    )


class TaskRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: str | None
    assigned_to: uuid.UUID | None
    assigned_to_type: AssigneeType | None
    created_by: uuid.UUID | None
    started_at: datetime | None
    completed_at: datetime | None
    due_date: datetime | None
    room_id: uuid.UUID | None
    result: Any
    created_at: datetime
    updated_at: datetime
    dependencies: list[uuid.UUID] = Field(description="Tasks this one depends on.")
    blocked_by: list[uuid.UUID] = Field(description="The dependencies not yet completed.")


TaskPage = Page[TaskRead]
