"""One migration history for both backends: up from empty, down to base, no drift."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from taskledger.store import Base, make_engine, migrate
from taskledger.store.engine import for_writing


def test_upgrade_from_empty_then_downgrade_to_base(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        assert migrate.drift(engine) == []

        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        migrate.upgrade(engine)  # and back up again, cleanly
        assert migrate.drift(engine) == []
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(engine) -> None:  # type: ignore[no-untyped-def]
    assert migrate.drift(engine) == []


def test_drift_is_detected(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE runs ADD COLUMN stray INTEGER"))
        conn.execute(text("CREATE INDEX ix_runs_stray ON runs (stray)"))
    differences = migrate.drift(engine)
    rendered = " ".join(str(item) for item in differences)
    assert "stray" in rendered
    assert "ix_runs_stray" in rendered


def test_0003_rebuilds_integer_keyed_tables_keeping_their_rows(empty_database_url: str) -> None:
    """SQLite: the tables with an integer key come out of 0003 with AUTOINCREMENT and every row;
    the id of the newest row, once deleted, is never handed out again."""
    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0002")
        with for_writing(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_superuser, is_active,"
                    " created_at, updated_at) VALUES (:u, 'a@example.com', 'x', false, true,"
                    " :t, :t)"
                ),
                {"u": USER.hex if engine.dialect.name == "sqlite" else USER, "t": T},
            )
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, owner_id, created_at, updated_at)"
                    " VALUES (:p, 'p', :u, :t, :t)"
                ),
                {
                    "p": PROJECT.hex if engine.dialect.name == "sqlite" else PROJECT,
                    "u": USER.hex if engine.dialect.name == "sqlite" else USER,
                    "t": T,
                },
            )
            for run_id in (1, 2, 3):
                conn.execute(
                    text(
                        "INSERT INTO runs (project_id, task, run_id, status, started_at,"
                        " inputs, created_at, updated_at) VALUES (:p, 't', :r, 'completed',"
                        " :t, :inputs, :t, :t)"
                    ),
                    {
                        "p": PROJECT.hex if engine.dialect.name == "sqlite" else PROJECT,
                        "r": f"r{run_id}",
                        "t": T,
                        "inputs": '{"b": 1, "a": [2]}',
                    },
                )
        before = _rows(engine)
        migrate.upgrade(engine)
        assert _rows(engine) == before
        assert migrate.drift(engine) == []
        with for_writing(engine).begin() as conn:
            conn.execute(text("DELETE FROM runs WHERE id = 3"))
            new_id = conn.execute(
                text(
                    "INSERT INTO runs (project_id, task, run_id, status, started_at, created_at,"
                    " updated_at) VALUES (:p, 't', 'r4', 'queued', :t, :t, :t) RETURNING id"
                ),
                {"p": PROJECT.hex if engine.dialect.name == "sqlite" else PROJECT, "t": T},
            ).scalar()
        assert new_id == 4  # not 3: the deleted run can come back under its own id
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                ddl = dict(conn.execute(text("SELECT name, sql FROM sqlite_master")).all())
            for table in (
                "runs",
                "agent_connections",
                "acknowledgements",
                "retention_runs",
                "retention_holds",
                "deletion_events",
                "login_failures",
            ):
                assert "AUTOINCREMENT" in ddl[table], table
            assert "started_at DESC, id DESC" in ddl["ix_runs_started_at_desc_id_desc"]
    finally:
        engine.dispose()


USER = uuid.UUID("00000000-0000-4000-8000-000000000001")
PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000002")
T = "2026-01-01 00:00:00"


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(text("SELECT id, run_id, inputs FROM runs ORDER BY id"))
        ]


def test_0004_adds_rooms_keeping_tasks_dependencies_and_runs(empty_database_url: str) -> None:
    """On a populated 0003 database, 0004 adds rooms and ``tasks.room_id`` without losing a
    task, a dependency or a run's link to its task (SQLite rebuilds ``tasks`` to do it), and
    downgrading takes only what 0004 added."""
    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"

    def uid(value: uuid.UUID) -> object:
        return value.hex if sqlite else value

    tasks = [uuid.UUID(f"00000000-0000-4000-8000-00000000001{i}") for i in range(3)]
    try:
        migrate.upgrade(engine, "0003")
        with for_writing(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_superuser, is_active,"
                    " created_at, updated_at) VALUES (:u, 'a@example.com', 'x', false, true,"
                    " :t, :t)"
                ),
                {"u": uid(USER), "t": T},
            )
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, owner_id, created_at, updated_at)"
                    " VALUES (:p, 'p', :u, :t, :t)"
                ),
                {"p": uid(PROJECT), "u": uid(USER), "t": T},
            )
            for task in tasks:
                conn.execute(
                    text(
                        "INSERT INTO tasks (id, project_id, title, status, created_at,"
                        " updated_at) VALUES (:i, :p, 't', 'pending', :t, :t)"
                    ),
                    {"i": uid(task), "p": uid(PROJECT), "t": T},
                )
            conn.execute(
                text("INSERT INTO task_dependencies (task_id, depends_on_id) VALUES (:a, :b)"),
                {"a": uid(tasks[1]), "b": uid(tasks[0])},
            )
            conn.execute(
                text(
                    "INSERT INTO runs (project_id, task_id, task, run_id, status, started_at,"
                    " created_at, updated_at) VALUES (:p, :k, 't', 'r1', 'completed', :t, :t, :t)"
                ),
                {"p": uid(PROJECT), "k": uid(tasks[2]), "t": T},
            )
            conn.execute(
                text(
                    "INSERT INTO retention_holds (scope, target_id, reason, created_by,"
                    " created_at) VALUES ('project', :p, 'r', 'me', :t)"
                ),
                {"p": str(PROJECT), "t": T},
            )
        before = _task_rows(engine)
        migrate.upgrade(engine, "0004")
        assert migrate.current_revision(engine) == "0004"
        assert _task_rows(engine) == before
        room = uuid.UUID("00000000-0000-4000-8000-000000000020")
        with for_writing(engine).begin() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM tasks WHERE room_id IS NULL")).scalar() == 3
            )
            conn.execute(
                text(
                    "INSERT INTO rooms (id, project_id, name, created_at, updated_at)"
                    " VALUES (:r, :p, 'general', :t, :t)"
                ),
                {"r": uid(room), "p": uid(PROJECT), "t": T},
            )
            conn.execute(
                text("UPDATE tasks SET room_id = :r WHERE id = :i"),
                {"r": uid(room), "i": uid(tasks[0])},
            )
            conn.execute(text("DELETE FROM rooms"))  # SET NULL: the task stays, out of the room
            assert (
                conn.execute(text("SELECT count(*) FROM tasks WHERE room_id IS NULL")).scalar() == 3
            )
            conn.execute(  # the hold scope `room` is allowed now
                text(
                    "INSERT INTO retention_holds (scope, target_id, reason, created_by,"
                    " created_at) VALUES ('room', :r, 'r', 'me', :t)"
                ),
                {"r": str(room), "t": T},
            )
        assert _holds(engine) == [("project", str(PROJECT)), ("room", str(room))]
        migrate.downgrade(engine, "0003")
        assert _holds(engine) == [("project", str(PROJECT))]
        assert _task_rows(engine) == before
        assert not {"rooms", "room_participants"} & set(inspect(engine).get_table_names())
        assert "room_id" not in {c["name"] for c in inspect(engine).get_columns("tasks")}
    finally:
        engine.dispose()


def test_0005_adds_the_web_tables_to_a_populated_database(empty_database_url: str) -> None:
    """On a populated 0004 database, 0005 adds login sessions and saved views, which go with
    their user; downgrading removes only them."""
    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"
    user = USER.hex if sqlite else USER
    try:
        migrate.upgrade(engine, "0004")
        with for_writing(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_superuser, is_active,"
                    " created_at, updated_at) VALUES (:u, 'a@example.com', 'x', false, true,"
                    " :t, :t)"
                ),
                {"u": user, "t": T},
            )
        migrate.upgrade(engine, "0005")
        assert migrate.current_revision(engine) == "0005"
        assert migrate.drift(engine) == []
        with for_writing(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created_at,"
                    " expires_at) VALUES ('h', :u, 'c', :t, :t)"
                ),
                {"u": user, "t": T},
            )
            conn.execute(
                text(
                    "INSERT INTO saved_views (user_id, page, name, query, created_at)"
                    " VALUES (:u, 'runs', 'failed', 'status=failed', :t)"
                ),
                {"u": user, "t": T},
            )
            conn.execute(text("DELETE FROM users"))
            for table in ("web_sessions", "saved_views"):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
        migrate.downgrade(engine, "0004")
        assert not {"web_sessions", "saved_views"} & set(inspect(engine).get_table_names())
        assert "rooms" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _task_rows(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return [
            conn.execute(text("SELECT id, title FROM tasks ORDER BY id")).all(),
            conn.execute(text("SELECT task_id, depends_on_id FROM task_dependencies")).all(),
            conn.execute(text("SELECT id, task_id FROM runs ORDER BY id")).all(),
        ]


def _holds(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("SELECT scope, target_id FROM retention_holds ORDER BY id")
            )
        ]


def test_0006_partitions_a_populated_runs_table(empty_database_url: str) -> None:
    """PostgreSQL: 0006 copies runs into a table partitioned by month, each row in its month's
    partition, the idempotency keys still unique per project; downgrading gives back the plain
    table with every row. SQLite: 0006 changes nothing."""
    engine = make_engine(empty_database_url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        migrate.upgrade(engine, "0005")
        with for_writing(engine).begin() as conn:
            _owner_and_project(conn, sqlite=sqlite)
            for number, started in enumerate(
                ["2025-01-31 23:59:59", "2025-02-01 00:00:00", "2025-03-15 12:00:00"], start=1
            ):
                conn.execute(
                    text(
                        "INSERT INTO runs (project_id, task, run_id, status, started_at,"
                        " idempotency_key, created_at, updated_at) VALUES"
                        " (:p, 't', :r, 'completed', :s, :k, :t, :t)"
                    ),
                    {
                        "p": PROJECT.hex if sqlite else PROJECT,
                        "r": f"r{number}",
                        "s": started,
                        "k": f"key-{number}",
                        "t": T,
                    },
                )
        before = _run_rows(engine)
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        assert _run_rows(engine) == before
        if sqlite:
            return
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'runs'")).scalar()
                == "p"
            )
            where = dict(
                conn.execute(text("SELECT run_id, tableoid::regclass::text FROM runs")).all()
            )
            keys = conn.execute(text("SELECT count(*) FROM run_idempotency_keys")).scalar()
        assert where == {"r1": "runs_p20250101", "r2": "runs_p20250201", "r3": "runs_p20250301"}
        assert keys == 3
        with pytest.raises(IntegrityError):
            _add_key_1_again(engine, "2026-06-01 00:00:00")  # in another partition
        with for_writing(engine).begin() as conn:  # the sequence goes on where it was
            next_id = conn.execute(
                text(
                    "INSERT INTO runs (project_id, task, run_id, status, started_at,"
                    " created_at, updated_at) VALUES (:p, 't', 'r4', 'completed', :t, :t, :t)"
                    " RETURNING id"
                ),
                {"p": PROJECT, "t": "2026-06-01 00:00:00"},
            ).scalar()
        assert next_id is not None and next_id > max(row[0] for row in before)
        after = _run_rows(engine)
        migrate.downgrade(engine, "0005")
        assert _run_rows(engine) == after
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'runs'")).scalar()
                == "r"
            )
            assert conn.execute(text("SELECT to_regclass('run_idempotency_keys')")).scalar() is None
        with pytest.raises(IntegrityError):
            _add_key_1_again(engine, T)
        assert migrate.drift(engine) == []
    finally:
        engine.dispose()


def _owner_and_project(conn: Connection, *, sqlite: bool) -> None:
    """USER and their PROJECT, by raw SQL (SQLite stores UUIDs as 32 hex digits)."""
    user, project = (USER.hex, PROJECT.hex) if sqlite else (USER, PROJECT)
    conn.execute(
        text(
            "INSERT INTO users (id, email, password_hash, is_superuser, is_active,"
            " created_at, updated_at) VALUES (:u, 'a@example.com', 'x', false, true, :t, :t)"
        ),
        {"u": user, "t": T},
    )
    conn.execute(
        text(
            "INSERT INTO projects (id, name, owner_id, created_at, updated_at)"
            " VALUES (:p, 'p', :u, :t, :t)"
        ),
        {"p": project, "u": user, "t": T},
    )


def _add_key_1_again(engine: Engine, started: str) -> None:
    """A run of PROJECT with the idempotency key ``key-1``, which another run already has."""
    with for_writing(engine).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (project_id, task, run_id, status, started_at,"
                " idempotency_key, created_at, updated_at) VALUES"
                " (:p, 't', 'dup', 'completed', :t, 'key-1', :t, :t)"
            ),
            {"p": PROJECT, "t": started},
        )


def _run_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("SELECT id, run_id, started_at, idempotency_key FROM runs ORDER BY id")
            )
        ]
