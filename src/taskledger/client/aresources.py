"""The resources of the async client: those of :mod:`taskledger.client.resources`, awaited,
each a thin face on :mod:`taskledger.client._specs`:
``ledger.runs``, ``ledger.tasks``, ``ledger.agents``, ``ledger.projects``, ``ledger.api_keys``,
``ledger.rooms``, ``ledger.sessions``, ``ledger.connections``, ``ledger.instructions``,
``ledger.users`` and ``ledger.admin``.

Methods that create or change a record take its request model (``AgentCreate(...)``), a dict,
or keyword fields, and return the response model; lists return a page (``items`` and
``next_cursor``) and ``iter`` follows ``next_cursor`` lazily, one page at a time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Literal, Unpack

from taskledger.client import _specs as S
from taskledger.client._calls import RunQuery
from taskledger.schemas.agents import AgentPage, AgentRead
from taskledger.schemas.api_keys import ApiKeyCreated, ApiKeyPage, ApiKeyRead
from taskledger.schemas.connections import ConnectionPage, ConnectionRead
from taskledger.schemas.instructions import (
    AcknowledgementPage,
    AcknowledgementRead,
    InstructionPage,
    InstructionRead,
)
from taskledger.schemas.projects import ProjectPage, ProjectRead
from taskledger.schemas.retention import (
    ArchivePage,
    ArchiveRead,
    ExecutionOut,
    HoldPage,
    HoldRead,
    PreviewOut,
    RestoreOut,
    RetentionRunPage,
    RetentionRunRead,
)
from taskledger.schemas.rooms import ParticipantPage, ParticipantRead, RoomPage, RoomRead
from taskledger.schemas.runs import BatchResult, RunCreate, RunPage, RunRead
from taskledger.schemas.sessions import SessionPage, SessionRead
from taskledger.schemas.tasks import TaskPage, TaskRead
from taskledger.schemas.users import UserPage, UserRead

if TYPE_CHECKING:
    from taskledger.client.aledger import AsyncLedger

Id = S.Id


class _Resource:
    def __init__(self, client: AsyncLedger) -> None:
        self._c = client


class AsyncProjects(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> ProjectRead:
        """Create a project (as a user, who becomes its owner): ``create(name="...")``."""
        return await self._c._send(S.project_create(body, fields))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> ProjectPage:
        return await self._c._send(S.project_list(limit, cursor))

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[ProjectRead]:
        return self._c._iterate(S.project_list(page_size, None))

    async def get(self, project_id: Id) -> ProjectRead:
        return await self._c._send(S.project_get(project_id))

    async def update(self, project_id: Id, body: Any = None, /, **fields: Any) -> ProjectRead:
        return await self._c._send(S.project_update(project_id, body, fields))

    async def delete(self, project_id: Id) -> None:
        await self._c._send(S.project_delete(project_id))


class AsyncAgents(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> AgentRead:
        """Register an agent: ``create(name="planner", agent_type="llm")``."""
        return await self._c._send(S.agent_create(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> AgentPage:
        """Filters: ``status``, ``is_active``, ``agent_type``, ``project_id``."""
        return await self._c._send(S.agent_list(limit=limit, cursor=cursor, **filters))

    def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[AgentRead]:
        return self._c._iterate(S.agent_list(limit=page_size, **filters))

    async def get(self, agent_id: Id) -> AgentRead:
        return await self._c._send(S.agent_get(agent_id))

    async def update(self, agent_id: Id, body: Any = None, /, **fields: Any) -> AgentRead:
        return await self._c._send(S.agent_update(agent_id, body, fields))

    async def delete(self, agent_id: Id) -> None:
        await self._c._send(S.agent_delete(agent_id))


class AsyncApiKeys(_Resource):
    async def create(self, project_id: Id, body: Any = None, /, **fields: Any) -> ApiKeyCreated:
        """Issue a key: ``create(project_id, name="ci", scopes=["write"])``; ``.key`` is the
        secret, shown this once."""
        return await self._c._send(S.key_create(project_id, body, fields))

    async def list(
        self, project_id: Id, *, limit: int | None = None, cursor: str | None = None
    ) -> ApiKeyPage:
        return await self._c._send(S.key_list(project_id, limit, cursor))

    def iter(self, project_id: Id, *, page_size: int | None = None) -> AsyncIterator[ApiKeyRead]:
        return self._c._iterate(S.key_list(project_id, page_size, None))

    async def revoke(self, project_id: Id, key_id: Id) -> None:
        await self._c._send(S.key_revoke(project_id, key_id))


class AsyncRooms(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> RoomRead:
        """Open a room: ``create(name="planning", topic="...")``; a name taken is a 409."""
        return await self._c._send(S.room_create(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> RoomPage:
        """Oldest first. Filters: ``name`` (exact), ``archived``, ``project_id``."""
        return await self._c._send(S.room_list(limit=limit, cursor=cursor, **filters))

    def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[RoomRead]:
        return self._c._iterate(S.room_list(limit=page_size, **filters))

    async def get(self, room_id: Id) -> RoomRead:
        return await self._c._send(S.room_get(room_id))

    async def update(self, room_id: Id, body: Any = None, /, **fields: Any) -> RoomRead:
        """Rename, change the topic, or archive (``archived=True``) or reopen the room."""
        return await self._c._send(S.room_update(room_id, body, fields))

    async def delete(self, room_id: Id) -> None:
        """Delete the room and its participations (archived first); its tasks stay."""
        await self._c._send(S.room_delete(room_id))

    async def join(
        self, room_id: Id, participant_type: str, participant_id: Id, *, role: str | None = None
    ) -> ParticipantRead:
        """Let an ``"agent"`` or a ``"user"`` join, as ``"member"`` (default), ``"owner"`` or
        ``"observer"``; joining twice is a 409."""
        return await self._c._send(S.room_join(room_id, participant_type, participant_id, role))

    async def leave(self, room_id: Id, participant_id: Id) -> ParticipantRead:
        """End the agent's or user's active participation (it stays listed, with ``left_at``)."""
        return await self._c._send(S.room_leave(room_id, participant_id))

    async def participants(
        self,
        room_id: Id,
        *,
        active: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ParticipantPage:
        """The room's participations, in the order they joined (``active``: current ones only,
        or with ``False`` past ones)."""
        return await self._c._send(S.room_participants(room_id, active, limit, cursor))

    def iter_participants(
        self, room_id: Id, *, active: bool | None = None, page_size: int | None = None
    ) -> AsyncIterator[ParticipantRead]:
        return self._c._iterate(S.room_participants(room_id, active, page_size, None))

    async def tasks(
        self, room_id: Id, *, limit: int | None = None, cursor: str | None = None
    ) -> TaskPage:
        """The room's tasks, oldest first."""
        return await self._c._send(S.room_tasks(room_id, limit, cursor))

    def iter_tasks(self, room_id: Id, *, page_size: int | None = None) -> AsyncIterator[TaskRead]:
        return self._c._iterate(S.room_tasks(room_id, page_size, None))


class AsyncTasks(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> TaskRead:
        return await self._c._send(S.task_create(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> TaskPage:
        """Filters: ``status`` (a list), ``assigned_to``, ``room_id``, ``priority``,
        ``due_before``, ``due_after``, ``project_id``."""
        return await self._c._send(S.task_list(limit=limit, cursor=cursor, **filters))

    def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[TaskRead]:
        return self._c._iterate(S.task_list(limit=page_size, **filters))

    async def get(self, task_id: Id) -> TaskRead:
        return await self._c._send(S.task_get(task_id))

    async def update(self, task_id: Id, body: Any = None, /, **fields: Any) -> TaskRead:
        return await self._c._send(S.task_update(task_id, body, fields))

    async def assign(
        self, task_id: Id, assignee_type: str | None, assignee_id: Id | None
    ) -> TaskRead:
        """Assign to an ``"agent"`` or a ``"user"``; ``None, None`` unassigns."""
        return await self._c._send(S.task_assign(task_id, assignee_type, assignee_id))

    async def set_status(self, task_id: Id, status: str, *, reopen: bool = False) -> TaskRead:
        """Move the task; a 409 (:class:`~taskledger.client.Conflict`) lists its ``blockers``."""
        return await self._c._send(S.task_status(task_id, status, reopen))

    async def delete(self, task_id: Id) -> None:
        await self._c._send(S.task_delete(task_id))


class AsyncRuns(_Resource):
    async def create(
        self, body: RunCreate | dict[str, Any] | None = None, /, **fields: Any
    ) -> RunRead:
        """Record a run: ``create(task="embed", status="completed", inputs={...})``.

        An idempotency key is generated unless given, and kept across retries: a retried create
        returns the first run, never a second one."""
        return await self._c._send(S.run_create(body, fields))

    async def batch(
        self,
        runs: Sequence[RunCreate | dict[str, Any]],
        *,
        project_id: Id | None = None,
        on_existing: Literal["keep", "advance"] = "keep",
    ) -> BatchResult:
        """Record up to 1000 runs in one transaction (all or none), each with a key. A run whose
        key is recorded already is kept as it is, or, with ``on_existing="advance"``, moved
        forward to the item when the item's status is at a later stage."""
        return await self._c._send(S.run_batch(runs, project_id, on_existing))

    async def update(self, run_pk: int, body: Any = None, /, **fields: Any) -> RunRead:
        return await self._c._send(S.run_update(run_pk, body, fields))

    async def get(self, run_pk: int) -> RunRead:
        return await self._c._send(S.run_get(run_pk))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[RunQuery]
    ) -> RunPage:
        """One page, newest first; filters as in SPEC section 4 (``status`` and ``task`` take
        lists)."""
        return await self._c._send(S.run_list(limit, cursor, filters))

    def iter(
        self, *, page_size: int | None = None, **filters: Unpack[RunQuery]
    ) -> AsyncIterator[RunRead]:
        """Every matching run, newest first, fetched a page at a time as you iterate."""
        return self._c._iterate(S.run_list(page_size, None, filters))

    async def export(
        self,
        to: str | os.PathLike[str] | IO[bytes],
        *,
        format: str = "ndjson",
        limit: int | None = None,
        **filters: Unpack[RunQuery],
    ) -> int:
        """Stream the export (``"ndjson"`` or ``"csv"``) to a path or a binary file; returns the
        bytes written. Memory stays flat however many runs there are."""
        call = S.run_export(format, limit, filters)
        if isinstance(to, str | os.PathLike):
            with open(to, "wb") as handle:
                return await self._c._download(call, handle)
        return await self._c._download(call, to)

    def lines(
        self, *, format: str = "ndjson", limit: int | None = None, **filters: Unpack[RunQuery]
    ) -> AsyncIterator[str]:
        """The export as an iterator of lines (without their line endings), streamed."""
        return self._c._lines(S.run_export(format, limit, filters))

    async def delete(self, run_pk: int) -> None:
        await self._c._send(S.run_delete(run_pk))


class AsyncSessions(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> SessionRead:
        return await self._c._send(S.session_create(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> SessionPage:
        """Filters: ``agent_id``, ``status``, ``project_id``."""
        return await self._c._send(S.session_list(limit=limit, cursor=cursor, **filters))

    def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[SessionRead]:
        return self._c._iterate(S.session_list(limit=page_size, **filters))

    async def get(self, session_id: Id) -> SessionRead:
        return await self._c._send(S.session_get(session_id))

    async def end(
        self, session_id: Id, status: str = "completed", *, ended_at: datetime | None = None
    ) -> SessionRead:
        return await self._c._send(S.session_end(session_id, status, ended_at))


class AsyncConnections(_Resource):
    async def open(self, body: Any = None, /, **fields: Any) -> ConnectionRead:
        """Open a connection: ``open(agent_id=..., session_id=...)``; it counts as a
        heartbeat. :meth:`AsyncLedger.connection` keeps one alive from an asyncio task."""
        return await self._c._send(S.connection_open(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> ConnectionPage:
        """Filters: ``status``, ``agent_id``, ``session_id``, ``project_id``."""
        return await self._c._send(S.connection_list(limit=limit, cursor=cursor, **filters))

    def iter(
        self, *, page_size: int | None = None, **filters: Any
    ) -> AsyncIterator[ConnectionRead]:
        return self._c._iterate(S.connection_list(limit=page_size, **filters))

    async def get(self, connection_id: int) -> ConnectionRead:
        return await self._c._send(S.connection_get(connection_id))

    async def heartbeat(self, connection_id: int) -> ConnectionRead:
        return await self._c._send(S.connection_heartbeat(connection_id))

    async def close(self, connection_id: int, reason: str = "closed") -> ConnectionRead:
        return await self._c._send(S.connection_close(connection_id, reason))


class AsyncInstructions(_Resource):
    async def create(self, body: Any = None, /, **fields: Any) -> InstructionRead:
        return await self._c._send(S.instruction_create(body, fields))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> InstructionPage:
        """Filters: ``status``, ``agent_id``, ``session_id``, ``project_id``."""
        return await self._c._send(S.instruction_list(limit=limit, cursor=cursor, **filters))

    def iter(
        self, *, page_size: int | None = None, **filters: Any
    ) -> AsyncIterator[InstructionRead]:
        return self._c._iterate(S.instruction_list(limit=page_size, **filters))

    async def get(self, instruction_id: Id) -> InstructionRead:
        return await self._c._send(S.instruction_get(instruction_id))

    async def update(
        self, instruction_id: Id, body: Any = None, /, **fields: Any
    ) -> InstructionRead:
        return await self._c._send(S.instruction_update(instruction_id, body, fields))

    async def acknowledge(
        self, instruction_id: Id, status: str = "received", *, message: str | None = None
    ) -> AcknowledgementRead:
        return await self._c._send(S.acknowledge(instruction_id, status, message))

    async def acknowledgements(
        self, instruction_id: Id, *, limit: int | None = None, cursor: str | None = None
    ) -> AcknowledgementPage:
        return await self._c._send(S.acknowledgement_list(instruction_id, limit, cursor))


class AsyncUsers(_Resource):
    """User accounts, for a superuser's client (see :meth:`AsyncLedger.login`)."""

    async def create(self, body: Any = None, /, **fields: Any) -> UserRead:
        """``create(email="...", password="...", is_superuser=False)``."""
        return await self._c._send(S.user_create(body, fields))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> UserPage:
        return await self._c._send(S.user_list(limit, cursor))

    def iter(self, *, page_size: int | None = None) -> AsyncIterator[UserRead]:
        return self._c._iterate(S.user_list(page_size, None))

    async def get(self, user_id: Id) -> UserRead:
        return await self._c._send(S.user_get(user_id))

    async def update(self, user_id: Id, body: Any = None, /, **fields: Any) -> UserRead:
        """Deactivate (``is_active=False``) or reactivate, promote or demote, or set a new
        ``password``."""
        return await self._c._send(S.user_update(user_id, body, fields))


class AsyncAdmin(_Resource):
    """Retention and storage, for clients made with ``admin_key=`` or a superuser's token."""

    async def preview(self, *, preset: str | None = None, policy: str | None = None) -> PreviewOut:
        """What a policy (a preset, TOML text, or the one in force) would do; its ``plan_id``
        is what :meth:`execute` needs."""
        return await self._c._send(S.admin_preview(preset, policy))

    async def execute(
        self,
        confirm: str,
        *,
        preset: str | None = None,
        policy: str | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> ExecutionOut:
        return await self._c._send(S.admin_execute(confirm, preset, policy, force, reason))

    async def retention_runs(
        self, *, mode: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> RetentionRunPage:
        return await self._c._send(S.admin_runs(mode, limit, cursor))

    def iter_retention_runs(
        self, *, mode: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[RetentionRunRead]:
        return self._c._iterate(S.admin_runs(mode, page_size, None))

    async def add_hold(self, scope: str, target_id: Any, reason: str) -> HoldRead:
        return await self._c._send(S.hold_add(scope, str(target_id), reason))

    async def holds(
        self, *, active: bool | None = None, limit: int | None = None, cursor: str | None = None
    ) -> HoldPage:
        return await self._c._send(S.hold_list(active, limit, cursor))

    async def release_hold(self, hold_id: int) -> HoldRead:
        return await self._c._send(S.hold_release(hold_id))

    async def archives(self, *, limit: int | None = None, cursor: str | None = None) -> ArchivePage:
        return await self._c._send(S.archive_list(limit, cursor))

    def iter_archives(self, *, page_size: int | None = None) -> AsyncIterator[ArchiveRead]:
        return self._c._iterate(S.archive_list(page_size, None))

    async def restore(
        self, uri: str, *, table: str | None = None, dry_run: bool = False
    ) -> RestoreOut:
        return await self._c._send(S.restore(uri, table, dry_run))

    async def stats(self, *, exact: bool = False) -> dict[str, Any]:
        return await self._c._send(S.stats(exact))
