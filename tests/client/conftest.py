"""A real ``taskledger serve`` for the client's tests, a project with keys of every scope in
it, and a user who owns it (for the routes only users may call).

Starting a server costs seconds on a loaded machine, so one server per backend serves the whole
session, on a database of its own; each test gets a project of its own in it. The tests that
stop and restart servers start their own."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from taskledger.enums import Scope
from taskledger.services import api_keys, projects, users
from taskledger.store import make_engine, make_session_factory, migrate
from taskledger.store.models import Project, Run
from tests.conftest import ADMIN_KEY, BACKENDS, PgDatabases
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
        project: Project = projects.create_project(
            session=session, name=f"client-{uuid.uuid4().hex[:8]}", owner=owner
        )
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


@dataclass
class Shared:
    server: Server
    engine: Engine
    env: dict[str, str]


def database_for(backend: str, request: pytest.FixtureRequest, where: Path) -> str:
    """A migrated database of its own, on ``backend`` (dropped at the end of the session)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, where / "client.db")
        return f"sqlite:///{where / 'client.db'}"
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = databases.create(f"client_{uuid.uuid4().hex[:6]}")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    backend = str(request.param)
    where = tmp_path_factory.mktemp(f"client-{backend}")
    url = database_for(backend, request, where)
    env = server_env(url, where, TASKLEDGER_ADMIN_API_KEY=ADMIN_KEY)
    engine = make_engine(url)
    try:
        with serving(env) as server:
            yield Shared(server, engine, env)
    finally:
        engine.dispose()


@pytest.fixture
def live(shared: Shared) -> Live:
    """A new project (and its owner and keys) on the session's server for ``backend``."""
    project_id, email, keys = seed(shared.engine)
    answer = httpx.post(
        f"{shared.server.url}/api/v1/auth/token",
        data={"username": email, "password": PASSWORD},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return Live(
        server=shared.server,
        engine=shared.engine,
        env=shared.env,
        project_id=project_id,
        key=keys["write"],
        admin_scope_key=keys["admin"],
        read_key=keys["read"],
        token=answer.json()["access_token"],
    )
