"""How every command reports an error: one line on standard error, the documented exit code,
and under ``--json`` a JSON error object on standard output; an unsupported database URL is a
usage error naming the schemes taskledger runs on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from taskledger.cli import cli
from taskledger.settings import Settings
from tests.cli.test_startup import LEAVES
from tests.retention.engine_helpers import populated

#: Arguments that get each command past its own usage checks, to the settings.
ARGUMENTS: dict[tuple[str, ...], list[str]] = {
    ("archive", "list"): [],
    ("archive", "verify"): ["2026/12/some-run"],
    ("collect", "celery"): [
        *("--broker", "amqp://127.0.0.1:1//", "--project", "p"),
        *("--url", "http://127.0.0.1:1", "--api-key", "k"),
    ],
    ("db", "check"): [],
    ("db", "current"): [],
    ("db", "partitions"): [],
    ("db", "upgrade"): [],
    ("generate",): ["--runs", "1"],
    ("holds", "add"): ["--scope", "run", "--id", "1", "--reason", "why"],
    ("holds", "list"): [],
    ("holds", "release"): ["1"],
    ("keys", "create"): ["--project", "p", "--name", "n", "--scope", "read"],
    ("keys", "list"): ["--project", "p"],
    ("keys", "revoke"): [str(uuid.UUID(int=1))],
    ("projects", "create"): ["p", "--owner", "a@example.com"],
    ("restore",): ["2026/12/some-run"],
    ("retention", "preview"): [],
    ("retention", "run"): ["--yes"],
    ("retention", "runs"): [],
    ("rooms", "archive"): ["r", "--project", "p"],
    ("rooms", "create"): ["r", "--project", "p"],
    ("rooms", "join"): ["r", "--project", "p", "--agent", str(uuid.UUID(int=1))],
    ("rooms", "leave"): ["r", "--project", "p", "--agent", str(uuid.UUID(int=1))],
    ("rooms", "list"): ["--project", "p"],
    ("runs", "export"): ["--project", "p"],
    ("runs", "import"): ["{file}", "--project", "p"],
    ("runs", "prune"): ["--before", "2020-01-01T00:00:00Z", "--yes"],
    ("serve",): [],
    ("stats",): [],
    ("users", "create"): ["--email", "a@example.com"],
}


def invoke(args: list[str], env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_every_command_is_in_the_table() -> None:
    assert sorted(ARGUMENTS) == sorted(LEAVES)


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
@pytest.mark.parametrize(
    "url", ["mysql://user:hunter2@db.example.com/ledger", "postgresql+psycopg2://u@h/d", "nope"]
)
def test_an_unsupported_database_url_is_one_line_for_every_command(
    path: tuple[str, ...], url: str, tmp_path: Path
) -> None:
    (tmp_path / "runs.ndjson").write_text("")
    args = [*path, *(a.format(file=tmp_path / "runs.ndjson") for a in ARGUMENTS[path])]
    env = {"TASKLEDGER_DATABASE_URL": url, "TASKLEDGER_DATA_DIR": str(tmp_path / "data")}

    code, out, err = invoke(args, env)
    assert code == 2, err
    assert out == ""
    [line] = err.splitlines()  # one line: no traceback, no usage text
    assert "TASKLEDGER_DATABASE_URL" in line and "sqlite" in line and "postgresql" in line
    assert "hunter2" not in line  # the URL may hold a password: never repeated

    code, out, err = invoke([*args, "--json"], env)
    assert code == 2
    error = json.loads(out)["error"]
    assert error["kind"] == "usage" and error["exit_code"] == 2
    assert "TASKLEDGER_DATABASE_URL" in error["message"] and "hunter2" not in out
    assert len(err.splitlines()) == 1


def _run(settings: Settings, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    return invoke(list(args), env, stdin)


def _json_error(out: str) -> dict[str, object]:
    error = json.loads(out)["error"]
    assert isinstance(error, dict)
    return error


def test_errors_and_refusals_under_json(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=300, days=300)
    cases: list[tuple[list[str], int, str, str]] = [
        (["holds", "release", "999"], 1, "not_found", "not found"),
        (["keys", "revoke", str(uuid.uuid4())], 1, "not_found", "no API key"),
        (["keys", "list", "--project", "nope"], 1, "not_found", "no project"),
        (["retention", "run", "--preset", "ops"], 3, "refused", "--yes"),
        (["retention", "run", "--preset", "ops", "--yes"], 3, "refused", "max_table_fraction"),
        (["runs", "prune", "--before", "2021-01-01T00:00:00Z"], 3, "refused", "--yes"),
        (["restore", "no/such/archive"], 1, "not_found", "no archive manifest"),
        (["runs", "export", "--project", "p", "--since", "last week"], 2, "usage", "--since"),
        (["retention", "preview", "--policy", "no-such-policy"], 2, "usage", "scientific"),
        (["generate"], 2, "usage", "--runs"),
        (["stats", "--no-such-option"], 2, "usage", "No such option"),
        (["no-such-command"], 2, "usage", "No such command"),
    ]
    for args, exit_code, kind, words in cases:
        code, out, err = _run(settings, *args, "--json")
        assert code == exit_code, (args, err)
        error = _json_error(out)
        assert error["kind"] == kind and error["exit_code"] == exit_code, (args, error)
        assert words in str(error["message"]), (args, error)
        assert words in err, (args, err)  # the message on standard error as well
        # ... and the same without --json: the message, and no JSON on standard output.
        code, out, err = _run(settings, *args)
        assert code == exit_code and words in err and '"error"' not in out, (args, out, err)


def test_a_refused_retention_run_says_so_in_json(settings: Settings, engine: Engine) -> None:
    """The refusal the issue saw: nothing on stdout. Now the JSON error object, exit code 3."""
    populated(engine, runs=300, days=300)
    code, out, err = _run(settings, "retention", "run", "--preset", "ops", "--json")
    assert code == 3
    assert _json_error(out) == {
        "kind": "refused",
        "message": "not confirmed (pass --yes to run without a prompt)",
        "exit_code": 3,
    }
    assert err.startswith("refused: not confirmed")


def test_release_and_revoke_report_json(settings: Settings, engine: Engine) -> None:
    project_id = populated(engine, runs=10, days=10)
    code, out, err = _run(
        settings, "holds", "add", "--scope", "project", "--id", str(project_id), "--reason", "x"
    )
    assert code == 0, err
    hold_id = out.split()[1]
    code, out, err = _run(settings, "holds", "release", hold_id, "--json")
    assert code == 0, err
    released = json.loads(out)
    assert released["id"] == int(hold_id) and released["released_at"]

    code, out, err = _run(settings, "users", "create", "--email", "k@example.com", "--json")
    assert code == 0, err
    code, out, err = _run(settings, "projects", "create", "kp", "--owner", "k@example.com")
    assert code == 0, err
    code, out, err = _run(
        settings, "keys", "create", "--project", "kp", "--name", "k", "--scope", "read", "--json"
    )
    assert code == 0, err
    key = json.loads(out)
    code, out, err = _run(settings, "keys", "revoke", key["id"], "--json")
    assert code == 0, err
    revoked = json.loads(out)
    assert revoked["id"] == key["id"] and revoked["revoked_at"] and "key" not in revoked


def test_a_list_of_problems_is_printed_for_people() -> None:
    from taskledger.cli.base import error_message
    from taskledger.errors import ValidationFailed

    exc = ValidationFailed(
        [
            {"loc": ["body", "runs", 3, "status"], "msg": "Input should be 'queued'", "type": "x"},
            {"loc": ["body"], "msg": "too many", "type": "y"},
        ]
    )
    assert error_message(exc) == "runs.3.status: Input should be 'queued'; too many"
    assert error_message(ValidationFailed("plain")) == "plain"
