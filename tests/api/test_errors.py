"""Values the database refuses become a 422, and a database that cannot answer a clear 503, never a
500 (SPEC section 1, principle 3)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from taskledger.api import create_app
from taskledger.settings import Settings
from taskledger.store import make_engine
from taskledger.store.engine import for_writing
from tests.helpers import key_headers, make_key, state_of


def test_a_value_the_database_cannot_hold_is_422(app: FastAPI) -> None:
    def invalid_cast() -> None:
        # What the schemas refuse up front; the handler is the net for anything they miss.
        with state_of(app).session_factory.begin() as session:
            session.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": "x"})

    app.add_api_route("/boom", invalid_cast)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    if state_of(app).engine.dialect.name == "sqlite":
        assert response.status_code == 200  # SQLite casts anything; nothing to refuse
    else:
        assert response.status_code == 422
        assert "cannot be stored" in response.json()["detail"]


def test_a_write_lock_held_too_long_is_a_busy_503_that_writes_nothing(
    settings: Settings, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL writers queue on row locks; SQLite has one write lock")
    engine = make_engine(settings.resolved_database_url, sqlite_busy_timeout_ms=50)
    app = create_app(settings, engine=engine)
    try:
        with TestClient(app) as client:
            project, headers = key_headers(app, "write")
            reader = {"X-API-Key": make_key(app, project, "read")}
            blocker = for_writing(engine).connect()
            try:
                blocker.begin()  # BEGIN IMMEDIATE: another writer, holding on to the lock
                response = client.post("/api/v1/runs", json={"task": "t"}, headers=headers)
                # Reads go on meanwhile, even a key's first, whose last use is due a write.
                read = client.get("/api/v1/runs", headers=reader)
            finally:
                blocker.rollback()
                blocker.close()
            assert read.status_code == 200, read.text
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            detail = response.json()["detail"]
            assert "busy" in detail and "unavailable" not in detail
            listed = client.get(
                "/api/v1/runs", headers={"X-API-Key": make_key(app, project, "read")}
            )
            assert listed.json()["items"] == []
    finally:
        engine.dispose()
