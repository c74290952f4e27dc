"""Shared fixtures: settings -> engine -> app -> client, on SQLite and (when configured) PostgreSQL.

Every test that uses the database runs once per backend. SQLite tests each get a fresh database
file, copied from a template migrated once per session. When ``TASKLEDGER_TEST_DATABASE_URL`` is
set, the same tests run on PostgreSQL in a database created for this run (migrated once, emptied
before each test) and dropped at the end. The shared databases named by the URL are never written.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from taskledger.api import create_app
from taskledger.settings import AuthSettings, Settings
from taskledger.store import Base, make_engine, migrate
from taskledger.store.partitions import ensure_partitions, list_partitions

# Read the test database before scrubbing the environment, so that a developer's own
# TASKLEDGER_* variables can never leak into (or be written by) the tests.
PG_ADMIN_URL = os.environ.get("TASKLEDGER_TEST_DATABASE_URL") or None
for _name in list(os.environ):
    if _name.startswith("TASKLEDGER_") or _name == "ADMIN_API_KEY":
        del os.environ[_name]

BACKENDS = ["sqlite"] + (["postgresql"] if PG_ADMIN_URL else [])
ADMIN_KEY = "test-admin-key-0123456789"


def pg_url_for(database: str) -> str:
    """The test server's URL pointed at ``database``."""
    assert PG_ADMIN_URL is not None
    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def pg_admin_execute(*statements: str) -> None:
    """Run statements on the maintenance database, outside any transaction."""
    engine = make_engine(pg_url_for(make_url(PG_ADMIN_URL or "").database or "postgres"))
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


class PgDatabases:
    """Creates throwaway PostgreSQL databases and drops every one of them at the end."""

    def __init__(self) -> None:
        self.prefix = f"taskledger_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []

    def create(self, suffix: str) -> str:
        name = f"{self.prefix}_{suffix}"
        pg_admin_execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return pg_url_for(name)

    def drop_all(self) -> None:
        for name in self.created:
            pg_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Real argon2id with its cheapest parameters: the cost is a production concern, and the
    default (~0.2 s per hash here) would dominate the suite's run time."""
    from argon2 import PasswordHasher
    from argon2.profiles import CHEAPEST

    from taskledger.services import passwords

    original = passwords._hasher
    passwords._hasher = PasswordHasher.from_parameters(CHEAPEST)
    try:
        yield
    finally:
        passwords._hasher = original


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    if not PG_ADMIN_URL:
        pytest.skip("TASKLEDGER_TEST_DATABASE_URL is not set")
    databases = PgDatabases()
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_databases: PgDatabases) -> str:
    """A PostgreSQL database at head, shared by the session (emptied before each test)."""
    url = pg_databases.create("main")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test copies it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend this test runs on."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at head with no rows, for this test alone."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "taskledger.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate_all(url)
    return url


def _truncate_all(url: str) -> None:
    """Every table emptied, and runs' partitions as a fresh migration leaves them."""
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            for partition in list_partitions(conn):
                if not partition.is_default:
                    conn.execute(text(f"DROP TABLE {partition.name}"))
        ensure_partitions(engine, "month")
    finally:
        engine.dispose()


@pytest.fixture
def empty_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all (never migrated), for migration tests."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    return databases.create(uuid.uuid4().hex[:8])


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own data dir and database, and a known admin key."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        auth=AuthSettings(admin_api_key=ADMIN_KEY, _env_file=None),  # type: ignore[arg-type,call-arg]
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.resolved_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An httpx client driving the app in-process, with its lifespan (start-up) run."""
    with TestClient(app) as test_client:
        yield test_client
