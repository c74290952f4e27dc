"""Runs: one execution of a named task (seed 003's run history), and the filters over them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from taskledger.enums import RunStatus
from taskledger.schemas.base import Page, ReadModel, StrictModel
from taskledger.schemas.limits import AwareDatetime, Flag, JsonValue


class RunCreate(StrictModel):
    """A run to record. ``started_at`` defaults to now; terminal runs get ``finished_at``."""

    task: str = Field(min_length=1, max_length=64, description="The task's name.")
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The orchestrator's run id; generated when omitted.",
    )
    status: RunStatus = RunStatus.QUEUED
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=2**63 - 1)
    inputs: JsonValue | None = None
    outputs_uri: str | None = Field(default=None, max_length=512)
    log_excerpt: str | None = None
    approval_state: str | None = Field(default=None, max_length=32)
    approver: str | None = Field(default=None, max_length=128)
    webhook_notified_at: AwareDatetime | None = None
    agent_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = Field(default=None, description="A task of the same project.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    project_id: uuid.UUID | None = Field(
        default=None, description="Required when calling as a user; implied by an API key."
    )


class RunUpdate(StrictModel):
    """Changes to a run. Leaving a terminal status needs ``reopen: true``."""

    status: RunStatus | None = None
    approval_state: str | None = Field(default=None, max_length=32)
    approver: str | None = Field(default=None, max_length=128)
    outputs_uri: str | None = Field(default=None, max_length=512)
    log_excerpt: str | None = None
    finished_at: AwareDatetime | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=2**63 - 1)
    webhook_notified_at: AwareDatetime | None = None
    reopen: Flag = False


class RunRead(ReadModel):
    id: int
    project_id: uuid.UUID
    agent_id: uuid.UUID | None
    task_id: uuid.UUID | None
    task: str
    run_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    inputs: Any | None
    outputs_uri: str | None
    log_excerpt: str | None
    approval_state: str | None
    approver: str | None
    webhook_notified_at: datetime | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime


RunPage = Page[RunRead]


class RunFilters(BaseModel):
    """The filters of the run list and exports; a cursor is bound to them."""

    since: datetime | None = None
    until: datetime | None = None
    status: list[RunStatus] = Field(default_factory=list)
    task: list[str] = Field(default_factory=list)
    agent: str | None = None
    run_id: str | None = None
    approval_state: str | None = None
    q: str | None = None


class BatchItem(BaseModel):
    """One run of a batch: its id, whether this call created it or it already existed (and, with
    ``on_existing="advance"``, moved it forward), and its status once the item is applied."""

    index: int
    id: int
    run_id: str
    idempotency_key: str | None
    created: bool
    advanced: bool = False
    status: str


class BatchResult(BaseModel):
    created: int
    existing: int
    advanced: int = 0
    items: list[BatchItem]
