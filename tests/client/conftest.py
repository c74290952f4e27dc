"""A real ``taskledger serve`` for the client's tests, a project with keys of every scope in
it, and a user who owns it (for the routes only users may call)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from taskledger.enums import Scope
from taskledger.services import api_keys, projects, users
from taskledger.store import make_session_factory
from taskledger.store.models import Project, Run
from tests.conftest import ADMIN_KEY
from tests.helpers import PASSWORD
from tests.serving import Server, server_env, serving


@dataclass
class Live:
    """A running server and credentials for it."""

    server: Server
    engine: Engine
    env: dict[str, str]
    project_id: uuid.UUID
    key: str  # read + write
    admin_scope_key: str
    read_key: str
    token: str  # the project owner's
    admin_key: str = ADMIN_KEY

    @property
    def url(self) -> str:
        return self.server.url

    def runs_in_db(self, **where: object) -> list[Run]:
        with make_session_factory(self.engine, read_only=True)() as session:
            query = select(Run).where(Run.project_id == self.project_id)
            for column, value in where.items():
                query = query.where(getattr(Run, column) == value)
            return list(session.scalars(query.order_by(Run.started_at.desc(), Run.id.desc())))

    def count_runs(self) -> int:
        with make_session_factory(self.engine, read_only=True)() as session:
            query = select(func.count()).select_from(Run).where(Run.project_id == self.project_id)
            return int(session.scalar(query) or 0)


def seed(engine: Engine) -> tuple[uuid.UUID, str, dict[str, str]]:
    """A user owning a project with a key of each scope set: (project id, email, keys)."""
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    keys = {}
    with make_session_factory(engine).begin() as session:
        owner = users.create_user(session=session, email=email, password=PASSWORD)
        project: Project = projects.create_project(session=session, name="client", owner=owner)
        for name, scopes in {
            "write": [Scope.READ, Scope.WRITE],
            "admin": [Scope.ADMIN],
            "read": [Scope.READ],
        }.items():
            _, keys[name] = api_keys.create_key(
                session=session,
                project=project,
                name=name,
                scopes=scopes,
                agent_id=None,
                created_by=None,
            )
        return project.id, email, keys


@pytest.fixture
def live(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[Live]:
    project_id, email, keys = seed(engine)
    env = server_env(database_url, tmp_path, TASKLEDGER_ADMIN_API_KEY=ADMIN_KEY)
    with serving(env) as server:
        answer = httpx.post(
            f"{server.url}/api/v1/auth/token",
            data={"username": email, "password": PASSWORD},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        yield Live(
            server=server,
            engine=engine,
            env=env,
            project_id=project_id,
            key=keys["write"],
            admin_scope_key=keys["admin"],
            read_key=keys["read"],
            token=answer.json()["access_token"],
        )
