"""Admin requests and responses: retention previews and executions, holds, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, StrictBool, model_validator

from taskledger.enums import HoldScope
from taskledger.schemas.base import Page, ReadModel, StrictModel


class PolicySource(StrictModel):
    """Which policy: a preset, an inline TOML policy, or (neither) the one in force."""

    preset: str | None = Field(default=None, max_length=64, description="A preset name.")
    policy: str | None = Field(
        default=None, max_length=256 * 1024, description="A policy in TOML (SPEC section 5)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> PolicySource:
        if self.preset is not None and self.policy is not None:
            raise ValueError("give either preset or policy, not both")
        return self


class ExecuteRequest(PolicySource):
    """Execute a previewed plan: ``confirm`` is the preview's ``plan_id``."""

    confirm: str = Field(min_length=1, max_length=64)
    force: StrictBool = Field(
        default=False, description="Override the table-fraction guard (JSON true/false only)."
    )
    reason: str | None = Field(
        default=None, max_length=2000, description="Why; required with force, audited."
    )


class PartitionPathOut(StrictModel):
    """PostgreSQL: how a rule deleting runs treats one partition of runs."""

    partition: str
    lower: datetime | None
    upper: datetime | None
    rows: int = Field(description="Rows in the partition.")
    selected: int = Field(description="Rows of it the rule selects.")
    path: Literal["drop", "batched"] = Field(
        description="`drop`: every row is selected; archived whole, then detached and dropped. "
        "`batched`: deleted in batches."
    )


class RulePreviewOut(StrictModel):
    name: str
    table: str
    action: str
    archive: bool
    cutoff: datetime
    matched: int
    held: int
    protected: int
    oldest: datetime | None
    newest: datetime | None
    sample_ids: list[Any]
    estimated_archive_bytes: int
    partitions: list[PartitionPathOut] = Field(
        default_factory=list,
        description="PostgreSQL, a rule deleting runs: the path each partition holding its "
        "rows takes. Empty otherwise.",
    )


class PreviewOut(StrictModel):
    plan_id: str
    policy: str
    policy_hash: str
    now: datetime
    rules: list[RulePreviewOut]


class RuleOutcomeOut(StrictModel):
    name: str
    table: str
    action: str
    archive: bool
    matched: int
    affected: int
    batches: int
    cascaded: dict[str, int]
    unlinked: dict[str, int]
    partitions_dropped: list[str] = Field(
        default_factory=list, description="PostgreSQL: the partitions of runs dropped whole."
    )


class ExecutionOut(StrictModel):
    retention_run_id: int
    plan_id: str
    policy: str
    outcome: str
    archive_uri: str | None
    started_at: datetime
    finished_at: datetime | None
    rules: list[RuleOutcomeOut]


class HoldCreate(StrictModel):
    scope: HoldScope
    target_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


class HoldRead(ReadModel):
    id: int
    scope: str
    target_id: str
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None
    released_by: str | None


class RetentionRunRead(ReadModel):
    id: int
    actor: str
    trigger: str
    mode: str
    policy_name: str | None
    policy_hash: str | None
    plan_id: str | None
    reason: str | None
    counts: Any | None
    archive_uri: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str | None
    holder: str | None = Field(
        default=None, description="Who held the single-runner lock for this work."
    )
    consumed_by: int | None = Field(
        default=None, description="On a preview: the execution that used its plan_id."
    )


HoldPage = Page[HoldRead]
RetentionRunPage = Page[RetentionRunRead]


class ArchiveRead(StrictModel):
    """One archive under the archive root."""

    uri: str
    run_id: str
    created_at: datetime | None
    complete: bool
    tables: list[str]
    files: int
    rows: int
    bytes: int
    error: str | None = Field(description="Why the manifest cannot be read, when it cannot.")


ArchivePage = Page[ArchiveRead]


class RestoreRequest(StrictModel):
    """Restore an archive under the archive root (by URI as listed, or relative to the root)."""

    uri: str = Field(min_length=1, max_length=1024)
    table: str | None = Field(default=None, max_length=64, description="Only this table.")
    dry_run: StrictBool = Field(
        default=False, description="Count what would be done; change nothing (true/false only)."
    )


class RestoreCountsOut(StrictModel):
    """What restore did with the archived rows (of one table, or of all)."""

    inserted: int
    restored: int
    skipped: int
    orphaned: int
    conflicts: int = Field(description="Rows left alone (among the skipped): see `conflicted`.")
    unattached: int
    revoked: int = Field(description="API keys that were live when archived and came back revoked.")


class RestoreConflictOut(StrictModel):
    """One archived row left alone because the database holds something else."""

    key: dict[str, int | str] = Field(description="The row's primary key, column by column.")
    reason: str = Field(
        description="Why: 'a different row holds this key', or 'another row holds its unique "
        "value (columns)'."
    )
    columns: list[str] = Field(description="The columns that differ, or that clash.")


class RestoreTableOut(RestoreCountsOut):
    """One table of a restore: its counts, and the first 20 conflicts and revoked keys."""

    conflicted: list[RestoreConflictOut]
    revoked_keys: list[str] = Field(description="Ids of API keys that came back revoked.")


class RestoreOut(RestoreCountsOut):
    uri: str
    archive_run_id: str | None
    retention_run_id: int
    dry_run: bool
    outcome: str
    summary: str = Field(description="One line: the totals, conflicts and revoked keys named.")
    tables: dict[str, RestoreTableOut]
