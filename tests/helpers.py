"""Test helpers: build users, projects and keys through the real services, and log in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taskledger.enums import Scope
from taskledger.schemas.agents import AgentCreate
from taskledger.schemas.connections import ConnectionCreate
from taskledger.schemas.instructions import InstructionCreate
from taskledger.schemas.sessions import SessionCreate
from taskledger.schemas.tasks import TaskCreate
from taskledger.services import (
    agents,
    api_keys,
    connections,
    instructions,
    projects,
    sessions,
    tasks,
    users,
)
from taskledger.settings import Settings
from taskledger.state import AppState
from taskledger.store import make_session_factory
from taskledger.store.models import (
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Project,
    Task,
    User,
)

PASSWORD = "correct horse battery staple"


def state_of(app: FastAPI) -> AppState:
    state: AppState = app.state.ledger
    return state


@contextmanager
def transaction(app: FastAPI) -> Iterator[Session]:
    """A session in a transaction on the app's database, committed on exit."""
    with state_of(app).session_factory.begin() as session:
        yield session


def make_user(app: FastAPI, email: str | None = None, *, superuser: bool = False) -> User:
    with transaction(app) as session:
        return users.create_user(
            session=session,
            email=email or f"user-{uuid.uuid4().hex[:8]}@example.com",
            password=PASSWORD,
            is_superuser=superuser,
        )


def make_project(app: FastAPI, owner: User, name: str | None = None) -> Project:
    with transaction(app) as session:
        return projects.create_project(
            session=session, name=name or f"project-{uuid.uuid4().hex[:8]}", owner=owner
        )


def make_key(
    app: FastAPI, project: Project, *scopes: str, agent_id: uuid.UUID | None = None
) -> str:
    with transaction(app) as session:
        _, secret = api_keys.create_key(
            session=session,
            project=project,
            name=f"key-{'-'.join(scopes)}",
            scopes=[Scope(s) for s in scopes],
            agent_id=agent_id,
            created_by=None,
        )
    return secret


def make_agent(app: FastAPI, project: Project, name: str | None = None, **fields: Any) -> Agent:
    with transaction(app) as session:
        data = AgentCreate(name=name or f"agent-{uuid.uuid4().hex[:8]}", **fields)
        return agents.create_agent(session=session, project=project, data=data)


def make_task(app: FastAPI, project: Project, title: str = "a task", **fields: Any) -> Task:
    with transaction(app) as session:
        data = TaskCreate(title=title, **fields)
        return tasks.create_task(session=session, project=project, data=data, created_by=None)


def make_session(app: FastAPI, project: Project, agent: Agent) -> AgentSession:
    with transaction(app) as session:
        data = SessionCreate(agent_id=agent.id)
        return sessions.create_session(session=session, project=project, data=data)


def make_connection(app: FastAPI, project: Project, agent: Agent) -> AgentConnection:
    with transaction(app) as session:
        data = ConnectionCreate(agent_id=agent.id)
        return connections.open_connection(session=session, project=project, data=data)


def make_instruction(app: FastAPI, project: Project, agent: Agent) -> Instruction:
    with transaction(app) as session:
        data = InstructionCreate(agent_id=agent.id, payload={"do": "something"})
        return instructions.create_instruction(session=session, project=project, data=data)


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """Two projects with owners, a superuser, and keys of every scope in project A."""

    superuser: User
    owner: User
    stranger: User
    project: Project
    other_project: Project
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def build_world(app: FastAPI, client: TestClient) -> World:
    superuser = make_user(app, "root@example.com", superuser=True)
    owner = make_user(app, "owner@example.com")
    stranger = make_user(app, "stranger@example.com")
    project = make_project(app, owner, "alpha")
    other_project = make_project(app, stranger, "beta")
    world = World(superuser, owner, stranger, project, other_project)
    world.headers = {
        "superuser": bearer(login(client, superuser.email)),
        "owner": bearer(login(client, owner.email)),
        "stranger": bearer(login(client, stranger.email)),
        "read_key": {"X-API-Key": make_key(app, project, "read")},
        "write_key": bearer(make_key(app, project, "write")),
        "admin_scope_key": {"X-API-Key": make_key(app, project, "admin")},
        "other_project_key": {"X-API-Key": make_key(app, other_project, "admin")},
    }
    return world


def key_headers(app: FastAPI, *scopes: str) -> tuple[Project, dict[str, str]]:
    """A fresh project with an owner, and headers carrying a key of ``scopes`` in it."""
    owner = make_user(app)
    project = make_project(app, owner)
    return project, {"X-API-Key": make_key(app, project, *(scopes or ("write",)))}


def problem(response: Any) -> str:
    """What an error response says, for people: its ``detail``, or the messages of a 422's
    validation-error list joined (each prefixed with where it is)."""
    detail = response.json()["detail"]
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in detail
        )
    return str(detail)


def project_with_key(engine: Engine) -> tuple[uuid.UUID, str]:
    """A new project and a read+write key of it, made through the services."""
    with make_session_factory(engine).begin() as session:
        owner = users.create_user(
            session=session,
            email=f"owner-{uuid.uuid4().hex[:8]}@example.com",
            password="long enough",
        )
        project: Project = projects.create_project(
            session=session, name=f"load-{uuid.uuid4().hex[:8]}", owner=owner
        )
        _, secret = api_keys.create_key(
            session=session,
            project=project,
            name="load",
            scopes=[Scope.READ, Scope.WRITE],
            agent_id=None,
            created_by=None,
        )
    return project.id, secret


def changed(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``changes``: ``section__field=value`` for a field of a section
    (``retention__plan_ttl=60``), ``field=value`` for a top-level one."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            sections.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, fields in sections.items():
        top[section] = getattr(settings, section).model_copy(update=fields)
    return settings.model_copy(update=top)
