"""Every route of the app x every kind of caller answers as SPEC section 3 says.

The routes come from the app's own route table, so a new route cannot slip through: each must be
classified in ``ROUTES`` below (the test fails otherwise), and the class fixes what each caller
gets. No route may answer 500 to anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from taskledger.services.auth import ALGORITHM
from taskledger.store.types import utcnow
from taskledger.web.pages import PageRoute
from tests.conftest import ADMIN_KEY
from tests.helpers import (
    World,
    build_world,
    make_agent,
    make_connection,
    make_instruction,
    make_key,
    make_project,
    make_session,
    make_task,
    make_user,
    state_of,
    transaction,
)

OK = "ok"  # any 2xx
DENY_ANON = {"anonymous": 401, "malformed_token": 401, "expired_token": 401, "revoked_key": 401}
CALLERS = [
    *DENY_ANON,
    "wrong_admin_key",
    "other_project_key",
    "read_key",
    "write_key",
    "admin_scope_key",
    "admin_key",
    "superuser",
    "owner",
    "stranger",
]


def _expect(**overrides: int | str) -> dict[str, int | str]:
    table: dict[str, int | str] = {**DENY_ANON, "wrong_admin_key": 403}
    table.update(overrides)
    assert set(table) == set(CALLERS), set(CALLERS) - set(table)
    return table


PUBLIC = {caller: OK for caller in CALLERS}
AUTHENTICATED = _expect(**{c: OK for c in CALLERS if c not in DENY_ANON and c != "wrong_admin_key"})
SUPERUSER = _expect(
    other_project_key=403,
    read_key=403,
    write_key=403,
    admin_scope_key=403,
    admin_key=403,
    superuser=OK,
    owner=403,
    stranger=403,
)
USER_ONLY = _expect(
    other_project_key=403,
    read_key=403,
    write_key=403,
    admin_scope_key=403,
    admin_key=403,
    superuser=OK,
    owner=OK,
    stranger=OK,
)
ADMIN = _expect(
    other_project_key=403,
    read_key=403,
    write_key=403,
    admin_scope_key=403,
    admin_key=OK,
    superuser=OK,
    owner=403,
    stranger=403,
)
SEED_ADMIN_KEY = {caller: 403 for caller in CALLERS} | {"admin_key": OK}
PROJECT_READ = _expect(
    other_project_key=404,
    read_key=OK,
    write_key=OK,
    admin_scope_key=OK,
    admin_key=403,
    superuser=OK,
    owner=OK,
    stranger=404,
)
PROJECT_WRITE = {**PROJECT_READ, "read_key": 403}
PROJECT_ADMIN = {**PROJECT_WRITE, "write_key": 403}
PROJECT_OWNER = {**PROJECT_ADMIN, "admin_scope_key": 403}


@dataclass
class Call:
    """What to send: path parameters, and a JSON body or form."""

    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None
    query: dict[str, str] | None = None


Builder = Callable[[FastAPI, World, str], Call]


def _fresh_key_id(app: FastAPI, world: World, caller: str) -> Call:
    secret = make_key(app, world.project, "read")
    prefix = secret.split("_")[1]
    from sqlalchemy import select

    from taskledger.store.models import ApiKey
    from tests.helpers import transaction

    with transaction(app) as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
    return Call({"project_id": world.project.id, "key_id": key_id})


def _for_project(*, json: Any = None, query: bool = False) -> Builder:
    """A request acting in project A: keys imply it; users name it (body or query)."""

    def build(app: FastAPI, world: World, caller: str) -> Call:
        pid = str(world.project.id)
        if query:
            return Call(query={"project_id": pid})
        return Call(json={**json, "project_id": pid} if isinstance(json, dict) else json)

    return build


def _plan_id(app: FastAPI) -> str:
    from taskledger.enums import RetentionTrigger
    from taskledger.retention.execute.request import RetentionRequest
    from taskledger.retention.execute.runner import preview_policy
    from taskledger.retention.policy.presets import PRESETS

    state = state_of(app)
    request = RetentionRequest(
        actor="matrix",
        trigger=RetentionTrigger.API,
        policy=PRESETS["ops"],
        archive=state.archive_target,
    )
    return preview_policy(state.session_factory, request).plan_id


def _hold(app: FastAPI, world: World) -> int:
    from taskledger.enums import HoldScope
    from taskledger.retention.plan.holds import add_hold
    from tests.helpers import transaction

    with transaction(app) as session:
        return add_hold(
            session,
            scope=HoldScope.PROJECT,
            target_id=str(world.project.id),
            reason="matrix",
            actor="matrix",
        ).id


def _archive(app: FastAPI, world: World) -> str:
    """An archive under the app's archive root holding one run of project A."""
    from sqlalchemy import select

    from taskledger.retention.archive.stores import open_store
    from taskledger.retention.archive.writer import ArchiveWriter
    from taskledger.store.models import Run

    run_pk = _run(app, world)
    with transaction(app) as session:
        row = dict(session.execute(select(Run.__table__).where(Run.id == run_pk)).mappings().one())
    store = open_store(state_of(app).settings.resolved_archive_url)
    writer = ArchiveWriter(
        store,
        run_id=uuid.uuid4().hex,
        started_at=utcnow(),
        policy_name="matrix",
        policy_hash=None,
        schema_revision=None,
    )
    writer.write_part("runs", [row], key_column="id", rule="matrix", action="delete")
    writer.finish()
    return writer.uri


def _run(app: FastAPI, world: World) -> int:
    from taskledger.store.models import Run
    from tests.helpers import transaction

    with transaction(app) as session:
        run = Run(project_id=world.project.id, task="t", run_id="r", status="running")
        session.add(run)
        session.flush()
        return run.id


def _in_project(**extra: Any) -> Builder:
    return lambda app, world, caller: Call({"project_id": world.project.id}, **extra)


def _listing(app: FastAPI, world: World, caller: str) -> Call:
    # Always name project A: a key of another project must get 404, not its own project's list.
    return Call(query={"project_id": str(world.project.id)})


def _create_in_project(make_body: Callable[[FastAPI, World], dict[str, Any]]) -> Builder:
    return lambda app, world, caller: Call(
        json={"project_id": str(world.project.id), **make_body(app, world)}
    )


def _fresh(param: str, make: Callable[[FastAPI, World], Any], **extra: Any) -> Builder:
    """A new record of project A for every call, so that each allowed caller can act on one."""
    return lambda app, world, caller: Call({param: make(app, world).id}, **extra)


def _agent(app: FastAPI, world: World) -> Any:
    return make_agent(app, world.project)


def _task(app: FastAPI, world: World) -> Any:
    return make_task(app, world.project)


def _session(app: FastAPI, world: World) -> Any:
    return make_session(app, world.project, _agent(app, world))


def _connection(app: FastAPI, world: World) -> Any:
    return make_connection(app, world.project, _agent(app, world))


def _instruction(app: FastAPI, world: World) -> Any:
    return make_instruction(app, world.project, _agent(app, world))


def _room(app: FastAPI, world: World) -> Any:
    from taskledger.store.models import Room

    with transaction(app) as session:
        room = Room(project_id=world.project.id, name=f"room-{uuid.uuid4().hex[:8]}")
        session.add(room)
        session.flush()
        session.expunge(room)
        return room


def _join(app: FastAPI, world: World, caller: str) -> Call:
    body = {"participant_type": "agent", "participant_id": str(_agent(app, world).id)}
    return Call({"room_id": _room(app, world).id}, json=body)


def _leave(app: FastAPI, world: World, caller: str) -> Call:
    from taskledger.store.models import RoomParticipant

    room, agent = _room(app, world), _agent(app, world)
    with transaction(app) as session:
        session.add(
            RoomParticipant(
                project_id=world.project.id,
                room_id=room.id,
                participant_id=agent.id,
                participant_type="agent",
            )
        )
    return Call({"room_id": room.id, "participant_id": agent.id})


def _assign(app: FastAPI, world: World, caller: str) -> Call:
    body = {"assignee_type": "agent", "assignee_id": str(_agent(app, world).id)}
    return Call({"task_id": _task(app, world).id}, json=body)


ROUTES: dict[tuple[str, str], tuple[dict[str, int | str], Builder]] = {
    ("GET", "/healthz"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/readyz"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/metrics"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/openapi.json"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/docs"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/docs/oauth2-redirect"): (PUBLIC, lambda a, w, c: Call()),
    ("GET", "/redoc"): (PUBLIC, lambda a, w, c: Call()),
    ("POST", "/api/v1/auth/token"): (
        PUBLIC,
        lambda a, w, c: Call(
            data={"username": w.owner.email, "password": "correct horse battery staple"}
        ),
    ),
    ("GET", "/api/v1/auth/me"): (AUTHENTICATED, lambda a, w, c: Call()),
    ("POST", "/api/v1/users"): (
        SUPERUSER,
        lambda a, w, c: Call(
            json={"email": f"{uuid.uuid4().hex[:8]}@ex.com", "password": "long enough"}
        ),
    ),
    ("GET", "/api/v1/users"): (SUPERUSER, lambda a, w, c: Call()),
    ("GET", "/api/v1/users/{user_id}"): (SUPERUSER, lambda a, w, c: Call({"user_id": w.owner.id})),
    ("PATCH", "/api/v1/users/{user_id}"): (
        SUPERUSER,
        lambda a, w, c: Call({"user_id": make_user(a).id}, json={"is_active": False}),
    ),
    ("POST", "/api/v1/projects"): (
        USER_ONLY,
        lambda a, w, c: Call(json={"name": f"p-{uuid.uuid4().hex[:8]}"}),
    ),
    ("GET", "/api/v1/projects"): (AUTHENTICATED, lambda a, w, c: Call()),
    ("GET", "/api/v1/projects/{project_id}"): (PROJECT_READ, _in_project()),
    ("PATCH", "/api/v1/projects/{project_id}"): (
        PROJECT_OWNER,
        lambda a, w, c: Call(
            {"project_id": w.project.id}, json={"name": f"a-{uuid.uuid4().hex[:8]}"}
        ),
    ),
    ("DELETE", "/api/v1/projects/{project_id}"): (
        PROJECT_OWNER,
        # A fresh empty project of the owner each time, so every allowed caller can delete one.
        lambda a, w, c: Call({"project_id": _owned_empty_project(a, w, c)}),
    ),
    ("POST", "/api/v1/projects/{project_id}/api-keys"): (
        PROJECT_ADMIN,
        _in_project(json={"name": "k", "scopes": ["read"]}),
    ),
    ("GET", "/api/v1/projects/{project_id}/api-keys"): (PROJECT_ADMIN, _in_project()),
    ("DELETE", "/api/v1/projects/{project_id}/api-keys/{key_id}"): (PROJECT_ADMIN, _fresh_key_id),
    ("POST", "/api/v1/runs"): (PROJECT_WRITE, _for_project(json={"task": "t", "status": "queued"})),
    ("POST", "/api/v1/runs:batch"): (
        PROJECT_WRITE,
        _for_project(json={"runs": [{"task": "t"}, {"task": "u"}]}),
    ),
    ("GET", "/api/v1/runs"): (PROJECT_READ, _for_project(query=True)),
    ("GET", "/api/v1/runs.csv"): (PROJECT_READ, _for_project(query=True)),
    ("GET", "/api/v1/runs.ndjson"): (PROJECT_READ, _for_project(query=True)),
    ("GET", "/api/v1/runs/{run_pk}"): (PROJECT_READ, lambda a, w, c: Call({"run_pk": _run(a, w)})),
    ("PATCH", "/api/v1/runs/{run_pk}"): (
        PROJECT_WRITE,
        lambda a, w, c: Call({"run_pk": _run(a, w)}, json={"approver": "me"}),
    ),
    ("POST", "/agents/tasks/"): (
        PROJECT_WRITE,
        _for_project(json={"task": "t", "status": "running"}),
    ),
    ("PATCH", "/agents/tasks/{run_pk}"): (
        PROJECT_WRITE,
        lambda a, w, c: Call({"run_pk": _run(a, w)}, json={"status": "completed"}),
    ),
    ("GET", "/agents/tasks/"): (PROJECT_READ, _for_project(query=True)),
    ("GET", "/agents/tasks/paged"): (PROJECT_READ, _for_project(query=True)),
    ("GET", "/agents/tasks/paged.csv"): (PROJECT_READ, _for_project(query=True)),
    ("DELETE", "/api/v1/runs/{run_pk}"): (
        PROJECT_WRITE,
        lambda a, w, c: Call({"run_pk": _run(a, w)}),
    ),
    ("DELETE", "/agents/tasks/before"): (
        SEED_ADMIN_KEY,
        lambda a, w, c: Call(query={"date": "2000-01-01T00:00:00Z"}),
    ),
    # Admin
    ("POST", "/api/v1/admin/retention/preview"): (ADMIN, lambda a, w, c: Call(json={})),
    ("POST", "/api/v1/admin/retention/execute"): (
        ADMIN,
        lambda a, w, c: Call(json={"preset": "ops", "confirm": _plan_id(a)}),
    ),
    ("GET", "/api/v1/admin/retention/runs"): (ADMIN, lambda a, w, c: Call()),
    ("GET", "/api/v1/admin/stats"): (ADMIN, lambda a, w, c: Call()),
    ("GET", "/api/v1/admin/archives"): (ADMIN, lambda a, w, c: Call()),
    ("POST", "/api/v1/admin/restore"): (
        ADMIN,
        lambda a, w, c: Call(json={"uri": _archive(a, w), "dry_run": True}),
    ),
    ("POST", "/api/v1/admin/holds"): (
        ADMIN,
        lambda a, w, c: Call(
            json={"scope": "project", "target_id": str(w.project.id), "reason": "matrix"}
        ),
    ),
    ("GET", "/api/v1/admin/holds"): (ADMIN, lambda a, w, c: Call()),
    ("POST", "/api/v1/admin/holds/{hold_id}/release"): (
        ADMIN,
        lambda a, w, c: Call({"hold_id": _hold(a, w)}),
    ),
    # Agents
    ("POST", "/api/v1/agents"): (
        PROJECT_WRITE,
        _create_in_project(lambda a, w: {"name": f"agent-{uuid.uuid4().hex[:8]}"}),
    ),
    ("GET", "/api/v1/agents"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/agents/{agent_id}"): (PROJECT_READ, _fresh("agent_id", _agent)),
    ("PATCH", "/api/v1/agents/{agent_id}"): (
        PROJECT_WRITE,
        _fresh("agent_id", _agent, json={"nickname": "nick"}),
    ),
    ("DELETE", "/api/v1/agents/{agent_id}"): (PROJECT_WRITE, _fresh("agent_id", _agent)),
    # Rooms and participants
    ("POST", "/api/v1/rooms"): (
        PROJECT_WRITE,
        _create_in_project(lambda a, w: {"name": f"room-{uuid.uuid4().hex[:8]}"}),
    ),
    ("GET", "/api/v1/rooms"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/rooms/{room_id}"): (PROJECT_READ, _fresh("room_id", _room)),
    ("PATCH", "/api/v1/rooms/{room_id}"): (
        PROJECT_WRITE,
        _fresh("room_id", _room, json={"topic": "t"}),
    ),
    ("DELETE", "/api/v1/rooms/{room_id}"): (PROJECT_WRITE, _fresh("room_id", _room)),
    ("POST", "/api/v1/rooms/{room_id}/participants"): (PROJECT_WRITE, _join),
    ("POST", "/api/v1/rooms/{room_id}/participants/{participant_id}/leave"): (
        PROJECT_WRITE,
        _leave,
    ),
    ("GET", "/api/v1/rooms/{room_id}/participants"): (PROJECT_READ, _fresh("room_id", _room)),
    ("GET", "/api/v1/rooms/{room_id}/tasks"): (PROJECT_READ, _fresh("room_id", _room)),
    # Tasks
    ("POST", "/api/v1/tasks"): (PROJECT_WRITE, _create_in_project(lambda a, w: {"title": "t"})),
    ("GET", "/api/v1/tasks"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/tasks/{task_id}"): (PROJECT_READ, _fresh("task_id", _task)),
    ("PATCH", "/api/v1/tasks/{task_id}"): (
        PROJECT_WRITE,
        _fresh("task_id", _task, json={"title": "renamed"}),
    ),
    ("DELETE", "/api/v1/tasks/{task_id}"): (PROJECT_WRITE, _fresh("task_id", _task)),
    ("POST", "/api/v1/tasks/{task_id}/assign"): (PROJECT_WRITE, _assign),
    ("POST", "/api/v1/tasks/{task_id}/status"): (
        PROJECT_WRITE,
        _fresh("task_id", _task, json={"status": "in_progress"}),
    ),
    # Sessions
    ("POST", "/api/v1/sessions"): (
        PROJECT_WRITE,
        _create_in_project(lambda a, w: {"agent_id": str(_agent(a, w).id)}),
    ),
    ("GET", "/api/v1/sessions"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/sessions/{session_id}"): (PROJECT_READ, _fresh("session_id", _session)),
    ("POST", "/api/v1/sessions/{session_id}/end"): (
        PROJECT_WRITE,
        _fresh("session_id", _session, json={"status": "completed"}),
    ),
    # Connections
    ("POST", "/api/v1/connections"): (
        PROJECT_WRITE,
        _create_in_project(lambda a, w: {"agent_id": str(_agent(a, w).id)}),
    ),
    ("GET", "/api/v1/connections"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/connections/{connection_id}"): (
        PROJECT_READ,
        _fresh("connection_id", _connection),
    ),
    ("POST", "/api/v1/connections/{connection_id}/heartbeat"): (
        PROJECT_WRITE,
        _fresh("connection_id", _connection),
    ),
    ("POST", "/api/v1/connections/{connection_id}/close"): (
        PROJECT_WRITE,
        _fresh("connection_id", _connection, json={"reason": "done"}),
    ),
    # Instructions and acknowledgements
    ("POST", "/api/v1/instructions"): (
        PROJECT_WRITE,
        _create_in_project(lambda a, w: {"agent_id": str(_agent(a, w).id), "payload": {}}),
    ),
    ("GET", "/api/v1/instructions"): (PROJECT_READ, _listing),
    ("GET", "/api/v1/instructions/{instruction_id}"): (
        PROJECT_READ,
        _fresh("instruction_id", _instruction),
    ),
    ("PATCH", "/api/v1/instructions/{instruction_id}"): (
        PROJECT_WRITE,
        _fresh("instruction_id", _instruction, json={"status": "sent"}),
    ),
    ("POST", "/api/v1/instructions/{instruction_id}/acknowledgements"): (
        PROJECT_WRITE,
        _fresh("instruction_id", _instruction, json={"status": "received"}),
    ),
    ("GET", "/api/v1/instructions/{instruction_id}/acknowledgements"): (
        PROJECT_READ,
        _fresh("instruction_id", _instruction),
    ),
}


def _owned_empty_project(app: FastAPI, world: World, caller: str) -> uuid.UUID:
    # Users delete a fresh empty project of A's owner, so every allowed user has one to
    # delete; keys (which must be refused) aim at their own project A.
    if caller in ("owner", "superuser", "stranger"):
        return make_project(app, world.owner).id
    return world.project.id


def _callers(app: FastAPI, client: TestClient, world: World) -> dict[str, dict[str, str]]:
    state = state_of(app)
    now = utcnow()
    expired = jwt.encode(
        {
            "sub": str(world.owner.id),
            "iat": now - timedelta(hours=2),
            "exp": now - timedelta(hours=1),
            "typ": "access",
        },
        state.secret_key,
        algorithm=ALGORITHM,
    )
    revoked = make_key(app, world.project, "admin")
    me = client.get("/api/v1/auth/me", headers={"X-API-Key": revoked}).json()
    client.delete(
        f"/api/v1/projects/{world.project.id}/api-keys/{me['key']['id']}",
        headers=world.headers["owner"],
    )
    return {
        "anonymous": {},
        "malformed_token": {"Authorization": "Bearer not.a.token"},
        "expired_token": {"Authorization": f"Bearer {expired}"},
        "revoked_key": {"X-API-Key": revoked},
        "wrong_admin_key": {"X-Admin-Key": "not-the-admin-key"},
        "admin_key": {"X-Admin-Key": ADMIN_KEY},
        **world.headers,
    }


def _app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """The API's routes (the web UI's pages have their own access tests, in tests/web/)."""
    found = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, PageRoute):
            continue
        for method in sorted(route.methods or ()):
            path = route.path_format  # without converters: /runs/{run_pk}, not {run_pk:int}
            if method not in ("HEAD", "OPTIONS") and path:
                found.append((method, path))
    assert found, "the route table is empty: has the router API changed?"
    return found


def test_every_route_is_classified(app: FastAPI) -> None:
    unclassified = [r for r in _app_routes(app) if r not in ROUTES]
    assert unclassified == [], "classify these routes in ROUTES"
    stale = [r for r in ROUTES if r not in _app_routes(app)]
    assert stale == []


def test_access_matrix(app: FastAPI, client: TestClient) -> None:
    world = build_world(app, client)
    callers = _callers(app, client, world)
    failures = []
    for method, path in _app_routes(app):
        expectations, build = ROUTES[(method, path)]
        for caller in CALLERS:
            call = build(app, world, caller)
            url = path.format(**{k: str(v) for k, v in call.params.items()})
            response = client.request(
                method,
                url,
                headers=callers[caller],
                json=call.json,
                data=call.data,
                params=call.query,
            )
            expected = expectations[caller]
            got = response.status_code
            ok = 200 <= got < 300 if expected == OK else got == expected
            if not ok or got >= 500:
                failures.append(
                    f"{method} {path} as {caller}: expected {expected}, got {got} "
                    f"{response.text[:120]}"
                )
    assert failures == []
