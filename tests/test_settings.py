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
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8000
    assert settings.auth.admin_api_key is None
    assert settings.auth.secret_key is None
    assert settings.server.log_format == "text"
    assert (
        settings.resolved_database_url == f"sqlite:///{tmp_path / '.taskledger' / 'taskledger.db'}"
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("TASKLEDGER_PORT", "9001")
    monkeypatch.setenv("TASKLEDGER_LOG_FORMAT", "json")
    settings = build()
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.server.port == 9001
    assert settings.server.log_format == "json"


@pytest.mark.parametrize("name", ["TASKLEDGER_ADMIN_API_KEY", "ADMIN_API_KEY"])
def test_admin_key_from_either_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "s3cret")
    key = build().auth.admin_api_key
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


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("postgresql+psycopg://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("POSTGRESQL://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_supported_database_urls(monkeypatch: pytest.MonkeyPatch, url: str, resolved: str) -> None:
    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", url)
    assert build().resolved_database_url == resolved


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:secret@h/db",
        "mysql+pymysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "oracle://h/db",
        "/var/lib/taskledger.db",
    ],
)
def test_unsupported_database_urls_name_the_supported_schemes(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from taskledger.settings import describe_errors

    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", url)
    with pytest.raises(ValidationError) as caught:
        build()
    message = describe_errors(caught.value)
    assert message.startswith("TASKLEDGER_DATABASE_URL: unsupported database URL")
    assert "sqlite:///" in message and "postgresql+psycopg://" in message
    assert "secret" not in message and "\n" not in message


def test_admin_key_conflict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKLEDGER_ADMIN_API_KEY", "new-key")
    assert build().admin_key_conflict() is None
    monkeypatch.setenv("ADMIN_API_KEY", "new-key")
    assert build().admin_key_conflict() is None  # the same key twice: nothing to warn about
    monkeypatch.setenv("ADMIN_API_KEY", "seed-key")
    settings = build()
    warning = settings.admin_key_conflict()
    assert settings.auth.admin_api_key is not None
    assert settings.auth.admin_api_key.get_secret_value() == "new-key"
    assert warning is not None and warning.startswith("TASKLEDGER_ADMIN_API_KEY and ADMIN_API_KEY")
    assert "only TASKLEDGER_ADMIN_API_KEY is accepted" in warning
    assert "new-key" not in warning and "seed-key" not in warning
    # One in the environment, the other in .env: the environment's wins, and it is named.
    monkeypatch.delenv("TASKLEDGER_ADMIN_API_KEY")
    (tmp_path / ".env").write_text("TASKLEDGER_ADMIN_API_KEY=from-dotenv\n")
    settings = Settings()
    assert settings.auth.admin_api_key is not None
    assert settings.auth.admin_api_key.get_secret_value() == "seed-key"
    warning = settings.admin_key_conflict()
    assert warning is not None and "only ADMIN_API_KEY is accepted" in warning


def test_errors_never_repeat_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value in error may be a secret: pydantic's own message leaves it out too."""
    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", "mysql://u:s3cret-pw@h/db")
    with pytest.raises(ValidationError) as caught:
        build()
    assert "s3cret-pw" not in str(caught.value)
