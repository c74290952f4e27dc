"""What every benchmark shares: throwaway databases on each backend, seeded data, timing, output.

A benchmark measures taskledger against a baseline in the same run and prints the ratio, so the
figures hold on any machine. SQLite always runs; PostgreSQL runs too when
``TASKLEDGER_TEST_DATABASE_URL`` names a server (a database is created for the run and dropped).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from taskledger.enums import Scope
from taskledger.services import api_keys as api_keys_service
from taskledger.services import projects as projects_service
from taskledger.services import users as users_service
from taskledger.services.generate import generate
from taskledger.store import make_engine, make_session_factory, migrate
from taskledger.store.models import Project

console = Console()
if not console.is_terminal:
    console.width = 120  # tables stay readable when the output goes to a file or a pipe
K = TypeVar("K")
PG_URL = os.environ.get("TASKLEDGER_TEST_DATABASE_URL") or None


def backends(only: str | None = None) -> list[str]:
    """The backends to measure: SQLite, plus PostgreSQL when a server is configured."""
    names = ["sqlite"] + (["postgresql"] if PG_URL else [])
    return [name for name in names if only in (None, name)]


def arguments(
    description: str,
    *,
    rows: int,
    flags: dict[str, str] | None = None,
    more: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every benchmark takes: ``--rows`` and ``--backend``; ``flags`` adds on/off
    options of its own (name to help text), ``more`` any other option."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=rows, help=f"runs to seed (default {rows:,})")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default=None)
    for flag, help_text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=help_text)
    if more is not None:
        more(parser)
    return parser.parse_args()


def _pg_admin(statement: str) -> None:
    assert PG_URL is not None
    engine = make_engine(PG_URL)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@contextmanager
def fresh_database(backend: str, *, revision: str = "head") -> Iterator[Engine]:
    """A new database on ``backend`` migrated to ``revision``, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            try:
                migrate.upgrade(engine, revision)
                yield engine
            finally:
                engine.dispose()
        return
    name = f"taskledger_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    assert PG_URL is not None
    engine = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(engine, revision)
        yield engine
    finally:
        engine.dispose()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def cloned_database(engine: Engine) -> Iterator[Engine]:
    """A copy of ``engine``'s database, removed afterwards; ``engine`` itself is left unchanged.

    SQLite copies the file (after a WAL checkpoint); PostgreSQL creates a database from it as a
    template, which needs ``engine``'s connections closed (the pool is disposed first). Seeding
    once and cloning per measurement gives every measurement the same, fresh data.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as tmp:
            copy = Path(tmp) / "clone.db"
            shutil.copyfile(database_path(engine), copy)
            # Written back now, not during the measurement: the first fsync of the measured
            # code (an archive part's) would otherwise wait for the kernel to write the copy.
            os.sync()
            clone = make_engine(f"sqlite:///{copy}")
            try:
                yield clone
            finally:
                clone.dispose()
        return
    engine.dispose()
    source = engine.url.database
    name = f"taskledger_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    # FILE_COPY copies the files instead of logging every page: much faster for a big template.
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY = FILE_COPY')
    clone = make_engine(engine.url.set(database=name).render_as_string(hide_password=False))
    try:
        yield clone
    finally:
        clone.dispose()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_path(engine: Engine) -> str:
    """The SQLite file behind ``engine``."""
    database = engine.url.database
    assert database, "not a file-backed SQLite engine"
    return database


def new_project(engine: Engine, name: str = "bench") -> uuid.UUID:
    """A project (and its owner) to put data in."""
    with make_session_factory(engine).begin() as session:
        owner = users_service.create_user(
            session=session,
            email=f"{name}-{uuid.uuid4().hex[:6]}@bench.local",
            password="bench-password",
        )
        return projects_service.create_project(session=session, name=name, owner=owner).id


def new_api_key(engine: Engine, project_id: uuid.UUID, *scopes: Scope) -> str:
    """The secret of a new API key of ``project_id`` with ``scopes`` (default: write)."""
    with make_session_factory(engine).begin() as session:
        project = session.get(Project, project_id)
        assert project is not None
        _, secret = api_keys_service.create_key(
            session=session,
            project=project,
            name="bench",
            scopes=list(scopes or (Scope.WRITE,)),
            agent_id=None,
            created_by=None,
        )
        return secret


def engine_url(engine: Engine) -> str:
    """The URL of ``engine``, password included, for another process to connect with."""
    return engine.url.render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(engine: Engine, *, timeout: float = 30) -> Iterator[str]:
    """A real ``taskledger serve`` (uvicorn) on 127.0.0.1 in a subprocess, on ``engine``'s
    database; yields its base URL and stops it afterwards."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-serve-") as tmp:
        env = {
            **os.environ,
            "TASKLEDGER_DATABASE_URL": engine_url(engine),
            "TASKLEDGER_DATA_DIR": tmp,
            "TASKLEDGER_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "taskledger", "serve", "--no-migrate"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(command, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start in time")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def seed_runs(
    engine: Engine, rows: int, *, days: float = 180, seed: int = 7, now: datetime | None = None
) -> uuid.UUID:
    """A project filled with ``rows`` runs (and the rest of the model) over the ``days`` days
    before ``now`` (default: the current time)."""
    project_id = new_project(engine)
    started = time.perf_counter()
    generate(engine, project_id, runs=rows, days=days, seed=seed, now=now)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    console.print(f"  seeded {rows:,} runs in {time.perf_counter() - started:.1f}s", style="dim")
    return project_id


def best_of(fn: Callable[[], Any], *, repeat: int = 5) -> float:
    """The fastest of ``repeat`` timings of ``fn``, in seconds (the least disturbed one)."""
    timings = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings)


def best_of_each(fns: Mapping[K, Callable[[], Any]], *, repeat: int = 5) -> dict[K, float]:
    """The fastest of ``repeat`` timings of each function, taken in interleaved rounds so that
    a slow spell of the machine hits every candidate alike (for ratios between them)."""
    timings: dict[K, list[float]] = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            gc.collect()
            started = time.perf_counter()
            fn()
            timings[key].append(time.perf_counter() - started)
    return {key: min(values) for key, values in timings.items()}


def median_of(fn: Callable[[], Any], *, repeat: int = 5) -> float:
    """The median of ``repeat`` timings of ``fn``, in seconds."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def interleaved_medians(fns: Sequence[Callable[[], Any]], *, repeat: int = 5) -> list[float]:
    """The median timing of each of ``fns``, in seconds, run in turn ``repeat`` times over, so
    that a disturbance on a busy machine falls on all of them alike."""
    timings: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, series in zip(fns, timings, strict=True):
            gc.collect()
            started = time.perf_counter()
            fn()
            series.append(time.perf_counter() - started)
    return [statistics.median(series) for series in timings]


def peak_python_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by Python while ``fn`` runs (tracemalloc; timing is not measured)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@dataclass(frozen=True)
class Target:
    """A SPEC section 10 target: ``value`` must be at most (or at least) ``limit``."""

    limit: float
    at_most: bool = True

    def verdict(self, value: float) -> str:
        ok = value <= self.limit if self.at_most else value >= self.limit
        sign = "≤" if self.at_most else "≥"
        label = "[green]PASS[/]" if ok else "[red]MISS[/]"
        return f"{label} ({sign} {self.limit:g})"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One result table."""
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, justify="left" if header == headers[0] else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def times(value: float, digits: int = 2) -> str:
    """A ratio, as in ``1.05x``."""
    return f"{value:,.{digits}f}x"
