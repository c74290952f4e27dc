"""One migration history for both backends: up from empty, down to base, no drift."""

from __future__ import annotations

from sqlalchemy import inspect, text

from taskledger.store import Base, make_engine, migrate


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
