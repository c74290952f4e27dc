"""Settings: defaults, the environment, and the seed-compatible ADMIN_API_KEY alias."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from taskledger.settings import Settings


def build(**env: str) -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = build()
    assert settings.data_dir == Path(".taskledger")
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.admin_api_key is None
    assert settings.secret_key is None
    assert settings.log_format == "text"
    assert (
        settings.resolved_database_url == f"sqlite:///{tmp_path / '.taskledger' / 'taskledger.db'}"
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TASKLEDGER_PORT", "9001")
    monkeypatch.setenv("TASKLEDGER_LOG_FORMAT", "json")
    settings = build()
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.port == 9001
    assert settings.log_format == "json"


@pytest.mark.parametrize("name", ["TASKLEDGER_ADMIN_API_KEY", "ADMIN_API_KEY"])
def test_admin_key_from_either_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "s3cret")
    key = build().admin_api_key
    assert key is not None and key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(build())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKLEDGER_PORT", "0"),
        ("TASKLEDGER_LOG_FORMAT", "xml"),
        ("TASKLEDGER_ARCHIVE_GZIP_LEVEL", "0"),
        ("TASKLEDGER_ARCHIVE_GZIP_LEVEL", "10"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        build()
