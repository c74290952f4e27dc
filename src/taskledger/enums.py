"""The closed vocabularies of the data model: statuses, scopes, triggers and the like.

Pure standard library, so the ORM models, the API schemas and the HTTP client can all share them.
Anything outside these sets is rejected with 422 at the API and by a CHECK constraint in the
database.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Statuses a task or run never leaves unless explicitly reopened.
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class AgentStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    BUSY = "busy"
    ERROR = "error"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    TERMINATED = "terminated"
    ERROR = "error"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"
    TIMEOUT = "timeout"


class InstructionStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


class AcknowledgementStatus(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    COMPLETED = "completed"
    FAILED = "failed"


class AssigneeType(StrEnum):
    AGENT = "agent"
    USER = "user"


class ParticipantType(StrEnum):
    """Who takes part in a room: an agent of its project, or a user who may see the project."""

    AGENT = "agent"
    USER = "user"


class RoomRole(StrEnum):
    OWNER = "owner"
    MEMBER = "member"
    OBSERVER = "observer"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class HoldScope(StrEnum):
    PROJECT = "project"
    AGENT = "agent"
    TASK = "task"
    RUN = "run"
    SESSION = "session"
    ROOM = "room"


class RetentionTrigger(StrEnum):
    CLI = "cli"
    API = "api"
    SCHEDULE = "schedule"
    SQL = "sql"
    ENDPOINT = "endpoint"


class RetentionMode(StrEnum):
    PREVIEW = "preview"
    EXECUTE = "execute"
    RESTORE = "restore"


class RetentionOutcome(StrEnum):
    """How the work an audit row (``retention_runs``) records ended, or that it has not."""

    RUNNING = "running"
    OK = "ok"
    REFUSED = "refused"  # by a safeguard: a cap, the lock, a stale, spent or expired plan
    FAILED = "failed"
    DRY_RUN = "dry-run"  # previewed only: TASKLEDGER_RETENTION_DRY_RUN_ONLY, or restore --dry-run
    INTERRUPTED = "interrupted"  # its runner died; the next runner to take the lock says so


class PartAction(StrEnum):
    """What happened to the rows of an archive part: the action of the rule that selected them,
    or what a delete did to rows of another table."""

    DELETE = "delete"
    SCRUB = "scrub"
    EXPIRE = "expire"
    CASCADE = "cascade"  # taken with the deleted rows (ON DELETE CASCADE)
    UNLINK = "unlink"  # kept, their reference to a deleted row emptied (ON DELETE SET NULL)


class ExportFormat(StrEnum):
    """The formats runs are exported in, and imported back from."""

    CSV = "csv"
    NDJSON = "ndjson"


def values(enum: type[StrEnum]) -> list[str]:
    """The string values of ``enum``, in declaration order."""
    return [member.value for member in enum]
