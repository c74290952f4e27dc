"""Values the database refuses become a 422, never a 500 (SPEC section 1, principle 3)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.helpers import state_of


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
