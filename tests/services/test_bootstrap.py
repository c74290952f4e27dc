"""First start: the initial superuser with its password file, and the generated JWT secret."""

from __future__ import annotations

import stat
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.api import create_app
from taskledger.services.bootstrap import (
    SECRET_KEY_FILE,
    ensure_initial_admin,
    initial_password_file,
    resolve_secret_key,
)
from taskledger.services.passwords import verify_password
from taskledger.settings import AuthSettings, Settings
from taskledger.store import make_session_factory
from taskledger.store.models import User


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_the_superuser(
    app: FastAPI, settings: Settings, engine: Engine
) -> None:
    with TestClient(app):
        pass
    password_file = initial_password_file(settings)
    assert mode(password_file) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 16
    with Session(engine) as session:
        admin = session.scalars(select(User)).one()
    assert admin.email == "admin@localhost"
    assert admin.is_superuser and admin.is_active
    assert admin.password_hash.startswith("$argon2id$")
    assert password not in admin.password_hash
    assert verify_password(admin.password_hash, password)
    assert not verify_password(admin.password_hash, password + "x")


def test_second_start_changes_nothing(settings: Settings, engine: Engine) -> None:
    factory = make_session_factory(engine)
    first = ensure_initial_admin(factory, settings)
    assert first is not None
    written = (initial_password_file(settings)).read_text()
    assert ensure_initial_admin(factory, settings) is None
    assert (initial_password_file(settings)).read_text() == written
    with Session(engine) as session:
        assert len(session.scalars(select(User)).all()) == 1


def test_startup_logs_the_password_once(settings: Settings, engine: Engine, caplog) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, engine=engine)):
        pass
    with TestClient(create_app(settings, engine=engine)):
        pass
    password = (initial_password_file(settings)).read_text().strip()
    mentions = [r for r in caplog.records if password in r.getMessage()]
    assert len(mentions) == 1


def test_generated_secret_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", _env_file=None)  # type: ignore[call-arg]
    first = resolve_secret_key(settings)
    path = settings.data_dir / SECRET_KEY_FILE
    assert mode(path) == 0o600
    assert len(first) >= 32
    assert resolve_secret_key(settings) == first


def test_configured_secret_is_used_and_not_written(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        auth=AuthSettings(secret_key="configured-secret", _env_file=None),  # type: ignore[arg-type,call-arg]
        _env_file=None,
    )  # type: ignore[call-arg]
    assert resolve_secret_key(settings) == "configured-secret"
    assert not (settings.data_dir / SECRET_KEY_FILE).exists()
