"""The registry of tables retention may touch, and what each one allows.

The policy validator, the planner, the executor and restore all read this one registry, so that
"which column ages a run" or "what does expiring a connection set" is decided in exactly one
place. It also builds the scrub marker that replaces payload-like fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import String

from taskledger.enums import (
    AcknowledgementStatus,
    AgentStatus,
    ConnectionStatus,
    InstructionStatus,
    RunStatus,
    SessionStatus,
    TaskStatus,
    values,
)
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    Base,
    Instruction,
    Room,
    Run,
    Task,
)

#: The keys of a scrub marker, in the order they are written.
SCRUB_MARKER_KEYS = ("archived", "archived_at", "original_size")


@dataclass(frozen=True)
class ParentRelation:
    """A foreign key from a retained table to the row it belongs to.

    Restore re-inserts parents before children; a missing parent makes a row orphaned when the
    column is required, or lets it come back unattached when the column is nullable.
    """

    column: str
    table: str
    nullable: bool


@dataclass(frozen=True)
class ExpireSpec:
    """What the ``expire`` action does to a row: move it to a terminal status.

    Attributes:
        status: The terminal status the row is moved to.
        from_statuses: The only statuses that can be expired; other rows are already terminal.
        timestamp_column: Set to the time of expiry, when the table records one.
        reason_column: Set to a short human reason, when the table records one.
        reason_max_length: Width of ``reason_column``; longer reasons are cut to fit.
    """

    status: str
    from_statuses: tuple[str, ...]
    timestamp_column: str | None = None
    reason_column: str | None = None
    reason_max_length: int = 255


@dataclass(frozen=True)
class RetainedTable:
    """One table that retention rules may name, with everything the engine needs to know.

    Attributes:
        name: The table name, as written in policies.
        model: The ORM model.
        key_column: The primary key; batches are taken in key order and archives record key ranges.
        default_age_column: The timestamp ``older_than`` is measured against when a rule names none.
        age_columns: Every timestamp a rule may choose as its ``age_column``.
        statuses: The table's status vocabulary, in declaration order.
        scrub_fields: Payload-like fields the ``scrub`` action replaces; empty means no scrub.
        expire: What the ``expire`` action sets; ``None`` means the table cannot expire.
        parents: Foreign keys to parent rows, for restore ordering and orphan detection.
        age_fallbacks: For a nullable age column, a column to age the row by when it is empty.
            Without one, a row whose age column is NULL never matches a rule.
        project_column: The column the ``projects`` filter and project holds apply to.
    """

    name: str
    model: type[Base]
    default_age_column: str
    age_columns: tuple[str, ...]
    statuses: tuple[str, ...]
    scrub_fields: tuple[str, ...] = ()
    expire: ExpireSpec | None = None
    parents: tuple[ParentRelation, ...] = ()
    age_fallbacks: Mapping[str, str] = field(default_factory=dict, hash=False)
    key_column: str = "id"
    project_column: str = "project_id"

    @property
    def can_scrub(self) -> bool:
        """Whether the ``scrub`` action is allowed on this table."""
        return bool(self.scrub_fields)

    @property
    def can_expire(self) -> bool:
        """Whether the ``expire`` action is allowed on this table."""
        return self.expire is not None

    def is_text_field(self, name: str) -> bool:
        """Whether column ``name`` stores text rather than JSON (its marker is then a string)."""
        return isinstance(self.model.__table__.c[name].type, String)

    def scrub_values(self, row: Mapping[str, Any], archived_at: datetime) -> dict[str, Any]:
        """The new values of one row's scrub fields.

        Empty fields and fields that already hold a scrub marker are left alone: there is nothing
        to hide, and replacing a marker would lose the original size it recorded.

        Args:
            row: The row's current values, by column name (must include every scrub field).
            archived_at: When the original was archived (aware).

        Returns:
            Column name to new value, only for the fields that change; empty if none do.
        """
        changes: dict[str, Any] = {}
        for name in self.scrub_fields:
            original = row[name]
            if original is None or is_scrub_marker(original):
                continue
            marker = scrub_marker(original, archived_at)
            # A text column cannot hold a JSON object, so it holds the marker's JSON text.
            changes[name] = canonical_json(marker) if self.is_text_field(name) else marker
        return changes

    def expire_values(self, now: datetime, reason: str) -> dict[str, Any]:
        """The column values that expire a row of this table.

        Args:
            now: The time of expiry (aware).
            reason: Why, in a few words; stored where the table has a reason column.

        Raises:
            ValueError: The table cannot expire, or ``now`` is naive.
        """
        if self.expire is None:
            raise ValueError(f"table {self.name!r} cannot expire")
        spec = self.expire
        changes: dict[str, Any] = {"status": spec.status}
        if spec.timestamp_column:
            changes[spec.timestamp_column] = _aware_utc(now)
        if spec.reason_column:
            changes[spec.reason_column] = reason[: spec.reason_max_length]
        return changes


def _statuses(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(values(enum))


# Parents come before their children here too (a test checks it), though restore orders tables
# by the models' foreign keys (taskledger.retention.restore.judge.RESTORABLE).
TABLES: Mapping[str, RetainedTable] = MappingProxyType(
    {
        "tasks": RetainedTable(
            name="tasks",
            model=Task,
            default_age_column="completed_at",
            age_columns=("completed_at", "started_at", "created_at", "updated_at"),
            statuses=_statuses(TaskStatus),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("created_by", "users", nullable=True),
                ParentRelation("room_id", "rooms", nullable=True),
            ),
        ),
        "runs": RetainedTable(
            name="runs",
            model=Run,
            default_age_column="started_at",
            age_columns=("started_at", "finished_at", "created_at", "updated_at"),
            statuses=_statuses(RunStatus),
            scrub_fields=("inputs", "log_excerpt"),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("agent_id", "agents", nullable=True),
                ParentRelation("task_id", "tasks", nullable=True),
            ),
        ),
        "agent_sessions": RetainedTable(
            name="agent_sessions",
            model=AgentSession,
            default_age_column="ended_at",
            age_columns=("ended_at", "created_at", "updated_at"),
            statuses=_statuses(SessionStatus),
            scrub_fields=("experimental_parameters",),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("agent_id", "agents", nullable=False),
            ),
        ),
        "agent_connections": RetainedTable(
            name="agent_connections",
            model=AgentConnection,
            default_age_column="last_heartbeat_at",
            age_columns=("last_heartbeat_at", "closed_at", "created_at", "updated_at"),
            statuses=_statuses(ConnectionStatus),
            expire=ExpireSpec(
                status=ConnectionStatus.TIMEOUT.value,
                from_statuses=(ConnectionStatus.ACTIVE.value,),
                timestamp_column="closed_at",
                reason_column="close_reason",
            ),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("agent_id", "agents", nullable=False),
                ParentRelation("session_id", "agent_sessions", nullable=True),
            ),
            # A connection that never sent a heartbeat is as stale as its opening.
            age_fallbacks={"last_heartbeat_at": "created_at"},
        ),
        "instructions": RetainedTable(
            name="instructions",
            model=Instruction,
            default_age_column="created_at",
            age_columns=("created_at", "updated_at", "expires_at"),
            statuses=_statuses(InstructionStatus),
            scrub_fields=("payload",),
            expire=ExpireSpec(
                status=InstructionStatus.EXPIRED.value,
                from_statuses=(InstructionStatus.PENDING.value, InstructionStatus.SENT.value),
            ),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("agent_id", "agents", nullable=True),
                ParentRelation("session_id", "agent_sessions", nullable=True),
            ),
        ),
        "acknowledgements": RetainedTable(
            name="acknowledgements",
            model=Acknowledgement,
            default_age_column="created_at",
            age_columns=("created_at",),
            statuses=_statuses(AcknowledgementStatus),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("instruction_id", "instructions", nullable=False),
                ParentRelation("agent_id", "agents", nullable=True),
            ),
        ),
    }
)


#: Tables whose records the API deletes one by one (archived and audited like retention) but
#: that no policy rule may name: agents and rooms leave only on purpose, never by age.
RECORD_TABLES: Mapping[str, RetainedTable] = MappingProxyType(
    {
        **TABLES,
        "agents": RetainedTable(
            name="agents",
            model=Agent,
            default_age_column="created_at",
            age_columns=("created_at", "updated_at"),
            statuses=_statuses(AgentStatus),
            parents=(ParentRelation("project_id", "projects", nullable=False),),
        ),
        "rooms": RetainedTable(
            name="rooms",
            model=Room,
            default_age_column="created_at",
            age_columns=("created_at", "updated_at", "archived_at"),
            statuses=(),
            parents=(
                ParentRelation("project_id", "projects", nullable=False),
                ParentRelation("created_by", "users", nullable=True),
            ),
        ),
    }
)


def get_table(name: str) -> RetainedTable:
    """The registry entry of table ``name`` (a retained table, or one the API deletes from).

    Raises:
        KeyError: ``name`` is neither.
    """
    return RECORD_TABLES[name]


def canonical_json(value: Any) -> str:
    """``value`` as compact JSON with sorted keys: one text per value, in every process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def scrub_marker(original_value: Any, archived_at: datetime) -> dict[str, Any]:
    """The marker that replaces a scrubbed field.

    ``original_size`` is the size of the original value, measured before it is replaced (the
    seeds measured the marker instead): the length in bytes of its canonical JSON in UTF-8. For a
    text field that is the JSON string, quotes and escapes included, so sizes are comparable
    across fields. The marker goes into JSON columns as an object and into text columns
    (``runs.log_excerpt``) as its canonical JSON text.

    Args:
        original_value: The value being scrubbed (any JSON-serialisable value).
        archived_at: When the original was archived; must be timezone-aware.

    Returns:
        ``{"archived": True, "archived_at": <ISO 8601 UTC>, "original_size": <bytes>}``.

    Raises:
        ValueError: ``archived_at`` is naive.
        TypeError: ``original_value`` is not JSON-serialisable.
    """
    size = len(canonical_json(original_value).encode("utf-8"))
    return {
        "archived": True,
        "archived_at": _aware_utc(archived_at).isoformat(),
        "original_size": size,
    }


def is_scrub_marker(value: Any) -> bool:
    """Whether ``value`` is a scrub marker, as an object or as the JSON text of one."""
    if isinstance(value, str):
        if not value.startswith("{"):
            return False
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return (
        isinstance(value, dict)
        and sorted(value) == sorted(SCRUB_MARKER_KEYS)
        and value["archived"] is True
    )


def _aware_utc(moment: datetime) -> datetime:
    # Retention never guesses a time zone: a naive timestamp is a bug in the caller.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)
