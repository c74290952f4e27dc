"""The requests of each resource, as :class:`~taskledger.client._calls.Call` values: paths,
queries, bodies and response models, written once for the sync and the async resources."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel

from taskledger.client._calls import (
    Call,
    RunQuery,
    as_json,
    body,
    delete,
    get,
    ident,
    nothing,
    patch,
    post,
    query,
    reader,
    run_params,
)
from taskledger.schemas.agents import AgentCreate, AgentPage, AgentRead, AgentUpdate
from taskledger.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyPage
from taskledger.schemas.auth import Me, Token
from taskledger.schemas.connections import (
    ConnectionClose,
    ConnectionCreate,
    ConnectionPage,
    ConnectionRead,
)
from taskledger.schemas.instructions import (
    AcknowledgementCreate,
    AcknowledgementPage,
    AcknowledgementRead,
    InstructionCreate,
    InstructionPage,
    InstructionRead,
    InstructionUpdate,
)
from taskledger.schemas.projects import ProjectCreate, ProjectPage, ProjectRead, ProjectUpdate
from taskledger.schemas.retention import (
    ArchivePage,
    ExecuteRequest,
    ExecutionOut,
    HoldCreate,
    HoldPage,
    HoldRead,
    PolicySource,
    PreviewOut,
    RestoreOut,
    RestoreRequest,
    RetentionRunPage,
)
from taskledger.schemas.rooms import (
    ParticipantJoin,
    ParticipantPage,
    ParticipantRead,
    RoomCreate,
    RoomPage,
    RoomRead,
    RoomUpdate,
)
from taskledger.schemas.runs import BatchResult, RunCreate, RunPage, RunRead, RunUpdate
from taskledger.schemas.sessions import SessionCreate, SessionEnd, SessionPage, SessionRead
from taskledger.schemas.tasks import (
    TaskAssign,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskStatusChange,
    TaskUpdate,
)
from taskledger.schemas.users import UserCreate, UserPage, UserRead, UserUpdate

API = "/api/v1"
Id = uuid.UUID | str
Given = Any  # a request model, a dict, or None (then the keyword fields alone)
#: The most runs one ``runs:batch`` request may carry (the server's limit).
MAX_BATCH = 1000


def me() -> Call[Me]:
    return get(f"{API}/auth/me", Me)


def login(email: str, password: str) -> Call[Token]:
    # A form, as OAuth2's password flow has it. Not repeated once it may have reached the
    # server: a wrong password counts towards the login throttle.
    content = urlencode({"username": email, "password": password}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return Call("POST", f"{API}/auth/token", reader(Token), content=content, headers=headers)


# --- users (superusers) ---------------------------------------------------------------------------


def user_create(given: Given, fields: Mapping[str, Any]) -> Call[UserRead]:
    return post(f"{API}/users", UserRead, body(UserCreate, given, fields))


def user_list(limit: int | None, cursor: str | None) -> Call[UserPage]:
    return get(f"{API}/users", UserPage, query(limit=limit, cursor=cursor))


def user_get(user_id: Id) -> Call[UserRead]:
    return get(f"{API}/users/{ident(user_id)}", UserRead)


def user_update(user_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[UserRead]:
    return patch(f"{API}/users/{ident(user_id)}", UserRead, body(UserUpdate, given, fields))


# --- projects -------------------------------------------------------------------------------------


def project_create(given: Given, fields: Mapping[str, Any]) -> Call[ProjectRead]:
    return post(f"{API}/projects", ProjectRead, body(ProjectCreate, given, fields))


def project_list(limit: int | None, cursor: str | None) -> Call[ProjectPage]:
    return get(f"{API}/projects", ProjectPage, query(limit=limit, cursor=cursor))


def project_get(project_id: Id) -> Call[ProjectRead]:
    return get(f"{API}/projects/{ident(project_id)}", ProjectRead)


def project_update(project_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[ProjectRead]:
    path = f"{API}/projects/{ident(project_id)}"
    return patch(path, ProjectRead, body(ProjectUpdate, given, fields))


def project_delete(project_id: Id) -> Call[None]:
    return delete(f"{API}/projects/{ident(project_id)}")


# --- agents ---------------------------------------------------------------------------------------


def agent_create(given: Given, fields: Mapping[str, Any]) -> Call[AgentRead]:
    json = body(AgentCreate, given, fields)
    return post(f"{API}/agents", AgentRead, json, scope="body")


def agent_list(**filters: Any) -> Call[AgentPage]:
    return get(f"{API}/agents", AgentPage, query(**filters), scope="query")


def agent_get(agent_id: Id) -> Call[AgentRead]:
    return get(f"{API}/agents/{ident(agent_id)}", AgentRead)


def agent_update(agent_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[AgentRead]:
    return patch(f"{API}/agents/{ident(agent_id)}", AgentRead, body(AgentUpdate, given, fields))


def agent_delete(agent_id: Id) -> Call[None]:
    return delete(f"{API}/agents/{ident(agent_id)}")


# --- API keys -------------------------------------------------------------------------------------


def key_create(project_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[ApiKeyCreated]:
    path = f"{API}/projects/{ident(project_id)}/api-keys"
    return post(path, ApiKeyCreated, body(ApiKeyCreate, given, fields))


def key_list(project_id: Id, limit: int | None, cursor: str | None) -> Call[ApiKeyPage]:
    path = f"{API}/projects/{ident(project_id)}/api-keys"
    return get(path, ApiKeyPage, query(limit=limit, cursor=cursor))


def key_revoke(project_id: Id, key_id: Id) -> Call[None]:
    # Revoking twice is harmless: safe to repeat.
    path = f"{API}/projects/{ident(project_id)}/api-keys/{ident(key_id)}"
    return Call("DELETE", path, nothing, idempotent=True)


# --- rooms ----------------------------------------------------------------------------------------


def room_create(given: Given, fields: Mapping[str, Any]) -> Call[RoomRead]:
    return post(f"{API}/rooms", RoomRead, body(RoomCreate, given, fields), scope="body")


def room_list(**filters: Any) -> Call[RoomPage]:
    return get(f"{API}/rooms", RoomPage, query(**filters), scope="query")


def room_get(room_id: Id) -> Call[RoomRead]:
    return get(f"{API}/rooms/{ident(room_id)}", RoomRead)


def room_update(room_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[RoomRead]:
    return patch(f"{API}/rooms/{ident(room_id)}", RoomRead, body(RoomUpdate, given, fields))


def room_delete(room_id: Id) -> Call[None]:
    return delete(f"{API}/rooms/{ident(room_id)}")


def room_join(
    room_id: Id, participant_type: str, participant_id: Id, role: str | None
) -> Call[ParticipantRead]:
    fields: dict[str, Any] = {
        "participant_type": participant_type,
        "participant_id": participant_id,
    }
    if role is not None:
        fields["role"] = role
    json = body(ParticipantJoin, None, fields)
    # Joining twice is a 409: not repeated once it may have reached the server.
    return post(f"{API}/rooms/{ident(room_id)}/participants", ParticipantRead, json)


def room_leave(room_id: Id, participant_id: Id) -> Call[ParticipantRead]:
    path = f"{API}/rooms/{ident(room_id)}/participants/{ident(participant_id)}/leave"
    return post(path, ParticipantRead, None)


def room_participants(
    room_id: Id, active: bool | None, limit: int | None, cursor: str | None
) -> Call[ParticipantPage]:
    params = query(active=active, limit=limit, cursor=cursor)
    return get(f"{API}/rooms/{ident(room_id)}/participants", ParticipantPage, params)


def room_tasks(room_id: Id, limit: int | None, cursor: str | None) -> Call[TaskPage]:
    params = query(limit=limit, cursor=cursor)
    return get(f"{API}/rooms/{ident(room_id)}/tasks", TaskPage, params)


# --- tasks ----------------------------------------------------------------------------------------


def task_create(given: Given, fields: Mapping[str, Any]) -> Call[TaskRead]:
    return post(f"{API}/tasks", TaskRead, body(TaskCreate, given, fields), scope="body")


def task_list(**filters: Any) -> Call[TaskPage]:
    return get(f"{API}/tasks", TaskPage, query(**filters), scope="query")


def task_get(task_id: Id) -> Call[TaskRead]:
    return get(f"{API}/tasks/{ident(task_id)}", TaskRead)


def task_update(task_id: Id, given: Given, fields: Mapping[str, Any]) -> Call[TaskRead]:
    return patch(f"{API}/tasks/{ident(task_id)}", TaskRead, body(TaskUpdate, given, fields))


def task_assign(task_id: Id, assignee_type: str | None, assignee_id: Id | None) -> Call[TaskRead]:
    json = body(TaskAssign, None, {"assignee_type": assignee_type, "assignee_id": assignee_id})
    return post(f"{API}/tasks/{ident(task_id)}/assign", TaskRead, json, idempotent=True)


def task_status(task_id: Id, status: str, reopen: bool) -> Call[TaskRead]:
    fields: dict[str, Any] = {"status": status}
    if reopen:
        fields["reopen"] = True
    json = body(TaskStatusChange, None, fields)
    return post(f"{API}/tasks/{ident(task_id)}/status", TaskRead, json)


def task_delete(task_id: Id) -> Call[None]:
    return delete(f"{API}/tasks/{ident(task_id)}")


# --- runs -----------------------------------------------------------------------------------------


def new_key() -> str:
    """An idempotency key: one per run, kept across every retry and replay of it.

    A UUIDv7 (RFC 9562) as 32 hex digits: 48 bits of Unix time in milliseconds, then 74 random
    bits. Keys made one after another sort one after another, so the server's unique index on
    them grows at its end instead of at a random page per run: on a table of 100,000 runs,
    random keys cost ``runs:batch`` a third of its rate, time-ordered ones next to nothing
    (docs/benchmarks.md, "Python client")."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & _MASK48) << 80
        | 0x7 << 76  # the version
        | ((rand >> 62) & 0xFFF) << 64
        | 0b10 << 62  # the variant
        | (rand & _MASK62)
    )
    return f"{value:032x}"


_MASK48, _MASK62 = 2**48 - 1, 2**62 - 1


def run_create(given: Given, fields: Mapping[str, Any]) -> Call[RunRead]:
    json = body(RunCreate, given, fields)
    json.setdefault("idempotency_key", new_key())
    # Safe to repeat: the key makes the server answer the first run instead of a second one.
    return post(f"{API}/runs", RunRead, json, idempotent=True, scope="body")


_dump_run = RunCreate.__pydantic_serializer__.to_json


def encode_run(given: Given, fields: Mapping[str, Any]) -> tuple[str, bytes]:
    """One run for buffered mode: validated by ``RunCreate`` (a mistake fails in the caller),
    given an idempotency key unless it has one, and encoded once, to the JSON of a batch item;
    returns ``(key, encoded)``.

    A ``RunCreate`` given without ``fields`` is valid already and is not validated again. Only
    the fields set are encoded (the server fills in the rest), as :func:`body` does."""
    if isinstance(given, RunCreate) and not fields:
        run = given
        if run.idempotency_key is None:
            run = run.model_copy(update={"idempotency_key": new_key()})
    else:
        if isinstance(given, BaseModel):
            given = given.model_dump(exclude_unset=True)
        data = {**given, **fields} if given else dict(fields)
        if data.get("idempotency_key") is None:
            data["idempotency_key"] = new_key()
        run = RunCreate.model_validate(data)
    key = run.idempotency_key
    assert key is not None
    return key, _dump_run(run, exclude_unset=True)


def run_item(item: RunCreate | Mapping[str, Any]) -> dict[str, Any]:
    """One run of a batch, validated, with an idempotency key."""
    json: dict[str, Any] = body(RunCreate, item, {})
    json.setdefault("idempotency_key", new_key())
    return json


def run_batch(
    runs: Sequence[RunCreate | Mapping[str, Any]],
    project_id: Id | None,
    on_existing: str = "keep",
) -> Call[BatchResult]:
    items = [run_item(r) for r in runs]
    json: dict[str, Any] = {"runs": items}
    if project_id is not None:
        json["project_id"] = ident(project_id)
    if on_existing != "keep":
        json["on_existing"] = on_existing
    return post(f"{API}/runs:batch", BatchResult, json, idempotent=True, scope="body")


def run_batch_json(json: Mapping[str, Any]) -> Call[BatchResult]:
    """A batch already encoded by the buffer (each item keyed)."""
    return post(f"{API}/runs:batch", BatchResult, json, idempotent=True, scope="body")


def run_update(run_pk: int, given: Given, fields: Mapping[str, Any]) -> Call[RunRead]:
    return patch(f"{API}/runs/{run_pk}", RunRead, body(RunUpdate, given, fields))


def run_get(run_pk: int) -> Call[RunRead]:
    return get(f"{API}/runs/{run_pk}", RunRead)


def run_list(limit: int | None, cursor: str | None, filters: RunQuery) -> Call[RunPage]:
    params = run_params(filters, limit=limit, cursor=cursor)
    return get(f"{API}/runs", RunPage, params, scope="query")


def run_export(fmt: str, limit: int | None, filters: RunQuery) -> Call[Any]:
    if fmt not in ("csv", "ndjson"):
        raise ValueError(f"format is 'csv' or 'ndjson', not {fmt!r}")
    params = run_params(filters, limit=limit)
    return Call("GET", f"{API}/runs.{fmt}", as_json, params, idempotent=True, scope="query")


def run_delete(run_pk: int) -> Call[None]:
    return delete(f"{API}/runs/{run_pk}")


# --- sessions -------------------------------------------------------------------------------------


def session_create(given: Given, fields: Mapping[str, Any]) -> Call[SessionRead]:
    json = body(SessionCreate, given, fields)
    return post(f"{API}/sessions", SessionRead, json, scope="body")


def session_list(**filters: Any) -> Call[SessionPage]:
    return get(f"{API}/sessions", SessionPage, query(**filters), scope="query")


def session_get(session_id: Id) -> Call[SessionRead]:
    return get(f"{API}/sessions/{ident(session_id)}", SessionRead)


def session_end(session_id: Id, status: str, ended_at: datetime | None) -> Call[SessionRead]:
    fields: dict[str, Any] = {"status": status}
    if ended_at is not None:
        fields["ended_at"] = ended_at
    json = body(SessionEnd, None, fields)
    return post(f"{API}/sessions/{ident(session_id)}/end", SessionRead, json)


# --- connections ----------------------------------------------------------------------------------


def connection_open(given: Given, fields: Mapping[str, Any]) -> Call[ConnectionRead]:
    json = body(ConnectionCreate, given, fields)
    return post(f"{API}/connections", ConnectionRead, json, scope="body")


def connection_list(**filters: Any) -> Call[ConnectionPage]:
    return get(f"{API}/connections", ConnectionPage, query(**filters), scope="query")


def connection_get(connection_id: int) -> Call[ConnectionRead]:
    return get(f"{API}/connections/{connection_id}", ConnectionRead)


def connection_heartbeat(connection_id: int) -> Call[ConnectionRead]:
    # A heartbeat says "alive now": sending it twice says the same.
    path = f"{API}/connections/{connection_id}/heartbeat"
    return post(path, ConnectionRead, None, idempotent=True)


def connection_close(connection_id: int, reason: str) -> Call[ConnectionRead]:
    json = body(ConnectionClose, None, {"reason": reason})
    return post(f"{API}/connections/{connection_id}/close", ConnectionRead, json)


# --- instructions ---------------------------------------------------------------------------------


def instruction_create(given: Given, fields: Mapping[str, Any]) -> Call[InstructionRead]:
    json = body(InstructionCreate, given, fields)
    return post(f"{API}/instructions", InstructionRead, json, scope="body")


def instruction_list(**filters: Any) -> Call[InstructionPage]:
    return get(f"{API}/instructions", InstructionPage, query(**filters), scope="query")


def instruction_get(instruction_id: Id) -> Call[InstructionRead]:
    return get(f"{API}/instructions/{ident(instruction_id)}", InstructionRead)


def instruction_update(
    instruction_id: Id, given: Given, fields: Mapping[str, Any]
) -> Call[InstructionRead]:
    path = f"{API}/instructions/{ident(instruction_id)}"
    return patch(path, InstructionRead, body(InstructionUpdate, given, fields))


def acknowledge(instruction_id: Id, status: str, message: str | None) -> Call[AcknowledgementRead]:
    fields: dict[str, Any] = {"status": status}
    if message is not None:
        fields["message"] = message
    json = body(AcknowledgementCreate, None, fields)
    path = f"{API}/instructions/{ident(instruction_id)}/acknowledgements"
    return post(path, AcknowledgementRead, json)


def acknowledgement_list(
    instruction_id: Id, limit: int | None, cursor: str | None
) -> Call[AcknowledgementPage]:
    path = f"{API}/instructions/{ident(instruction_id)}/acknowledgements"
    return get(path, AcknowledgementPage, query(limit=limit, cursor=cursor))


# --- admin ----------------------------------------------------------------------------------------


def _policy(preset: str | None, policy: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if preset is not None:
        fields["preset"] = preset
    if policy is not None:
        fields["policy"] = policy
    return fields


def admin_preview(preset: str | None, policy: str | None) -> Call[PreviewOut]:
    json = body(PolicySource, None, _policy(preset, policy))
    return post(f"{API}/admin/retention/preview", PreviewOut, json)


def admin_execute(
    confirm: str, preset: str | None, policy: str | None, force: bool, reason: str | None
) -> Call[ExecutionOut]:
    fields = {**_policy(preset, policy), "confirm": confirm}
    if force:
        fields["force"] = True
    if reason is not None:
        fields["reason"] = reason
    # A plan_id runs once: repeating an execution is refused (409), never done twice.
    json = body(ExecuteRequest, None, fields)
    return post(f"{API}/admin/retention/execute", ExecutionOut, json)


def admin_runs(mode: str | None, limit: int | None, cursor: str | None) -> Call[RetentionRunPage]:
    params = query(mode=mode, limit=limit, cursor=cursor)
    return get(f"{API}/admin/retention/runs", RetentionRunPage, params)


def hold_add(scope: str, target_id: str, reason: str) -> Call[HoldRead]:
    json = body(HoldCreate, None, {"scope": scope, "target_id": target_id, "reason": reason})
    return post(f"{API}/admin/holds", HoldRead, json)


def hold_list(active: bool | None, limit: int | None, cursor: str | None) -> Call[HoldPage]:
    return get(f"{API}/admin/holds", HoldPage, query(active=active, limit=limit, cursor=cursor))


def hold_release(hold_id: int) -> Call[HoldRead]:
    return post(f"{API}/admin/holds/{hold_id}/release", HoldRead, None)


def archive_list(limit: int | None, cursor: str | None) -> Call[ArchivePage]:
    return get(f"{API}/admin/archives", ArchivePage, query(limit=limit, cursor=cursor))


def restore(uri: str, table: str | None, dry_run: bool) -> Call[RestoreOut]:
    fields: dict[str, Any] = {"uri": uri}
    if table is not None:
        fields["table"] = table
    if dry_run:
        fields["dry_run"] = True
    # Restore is idempotent: rows already present are skipped.
    json = body(RestoreRequest, None, fields)
    return post(f"{API}/admin/restore", RestoreOut, json, idempotent=True)


def stats(exact: bool) -> Call[dict[str, Any]]:
    params = query(exact=exact or None)
    return Call("GET", f"{API}/admin/stats", as_json, params, idempotent=True)
