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


def test_partitions_lists_and_ensures(database_url: str) -> None:
    """PostgreSQL: the partitions of runs, in range order, the default one last; --ensure puts
    back a missing one. SQLite has none: a usage error."""
    code, out, err = run(database_url, "db", "partitions", "--json")
    if database_url.startswith("sqlite"):
        assert code == 2, out
        assert "PostgreSQL" in err
        return
    assert code == 0, err
    listed = json.loads(out)["partitions"]
    names = [p["name"] for p in listed]
    assert names[-1] == "runs_default" and listed[-1]["lower"] is None
    lowers = [p["lower"] for p in listed[:-1]]
    assert lowers == sorted(lowers) and len(lowers) >= 4  # this month and three ahead
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {names[1]}"))
    finally:
        engine.dispose()
    code, out, err = run(database_url, "db", "partitions", "--ensure", "--json")
    assert code == 0, err
    assert json.loads(out)["created"] == [names[1]]
    code, out, _ = run(database_url, "db", "partitions")
    assert code == 0 and names[1] in out and "(default)" in out
