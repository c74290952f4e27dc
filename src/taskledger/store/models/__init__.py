"""The ORM models of every taskledger table (SPEC section 2), re-exported from one place."""

from taskledger.store.models.base import Base
from taskledger.store.models.comms import (
    Acknowledgement,
    AgentConnection,
    AgentSession,
    Instruction,
)
from taskledger.store.models.governance import (
    DeletionEvent,
    RetentionHold,
    RetentionLease,
    RetentionRun,
    ScheduleTick,
)
from taskledger.store.models.identity import ApiKey, LoginFailure, Project, User
from taskledger.store.models.rooms import Room, RoomParticipant
from taskledger.store.models.runs import Run
from taskledger.store.models.web import SavedView, WebSession
from taskledger.store.models.work import Agent, Task, TaskDependency

__all__ = [
    "Acknowledgement",
    "Agent",
    "AgentConnection",
    "AgentSession",
    "ApiKey",
    "Base",
    "DeletionEvent",
    "Instruction",
    "LoginFailure",
    "Project",
    "RetentionHold",
    "RetentionLease",
    "RetentionRun",
    "Room",
    "RoomParticipant",
    "Run",
    "SavedView",
    "ScheduleTick",
    "Task",
    "TaskDependency",
    "User",
    "WebSession",
]
