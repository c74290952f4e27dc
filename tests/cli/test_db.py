"""``taskledger db upgrade|current|check`` against real databases on both backends."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import text

from taskledger.cli import cli
from taskledger.store import make_engine, migrate


def run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={"TASKLEDGER_DATABASE_URL": url})
    return result.exit_code, result.stdout, result.stderr


def test_upgrade_current_check(empty_database_url: str) -> None:
    code, _, _ = run(empty_database_url, "db", "check")
    assert code == 1  # an empty database is not at head

    code, out, _ = run(empty_database_url, "db", "current", "--json")
    assert code == 0
    assert json.loads(out) == {"current": None, "head": migrate.head_revision(), "at_head": False}

    code, out, _ = run(empty_database_url, "db", "upgrade")
    assert code == 0, out
    assert migrate.head_revision() in out

    code, out, _ = run(empty_database_url, "db", "current")
    assert code == 0
    assert f"current: {migrate.head_revision()}" in out

    code, out, _ = run(empty_database_url, "db", "check")
    assert code == 0, out
    assert "no drift" in out

    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE agents ADD COLUMN mood VARCHAR(10)"))
    finally:
        engine.dispose()
    code, out, _ = run(empty_database_url, "db", "check", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert any("mood" in problem for problem in report["problems"])


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["db", "explode"])
    assert result.exit_code == 2


def test_invalid_configuration_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["db", "current"], env={"TASKLEDGER_PORT": "not-a-port"})
    assert result.exit_code == 2
    assert "invalid configuration" in result.output
    assert "Traceback" not in result.output
