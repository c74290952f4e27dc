"""``taskledger users|projects|keys`` against a real database, and the keys they make work."""

from __future__ import annotations

import json

from click.testing import CliRunner
from fastapi.testclient import TestClient

from taskledger.cli import cli
from taskledger.settings import Settings


def run(settings: Settings, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_users_projects_and_keys(settings: Settings, client: TestClient) -> None:
    code, out, _ = run(settings, "users", "create", "--email", "Ops@Example.com", "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["email"] == "ops@example.com" and len(created["password"]) >= 16

    code, _, err = run(settings, "users", "create", "--email", "ops@example.com")
    assert code == 1 and "already exists" in err

    code, out, _ = run(
        settings,
        "users",
        "create",
        "--email",
        "lead@example.com",
        "--superuser",
        "--password-stdin",
        stdin="a typed password\n",
    )
    assert code == 0 and "password:" not in out
    login = client.post(
        "/api/v1/auth/token", data={"username": "lead@example.com", "password": "a typed password"}
    )
    assert login.status_code == 200

    code, _, err = run(
        settings, "users", "create", "--email", "x@y.z", "--password-stdin", stdin="short\n"
    )
    assert code == 2 and "password" in err

    code, out, _ = run(
        settings, "projects", "create", "ops", "--owner", "ops@example.com", "--json"
    )
    assert code == 0
    project = json.loads(out)
    code, _, err = run(settings, "projects", "create", "ops2", "--owner", "nobody@example.com")
    assert code == 1 and "no user" in err

    code, out, _ = run(
        settings,
        "keys",
        "create",
        "--project",
        "ops",
        "--name",
        "deploy",
        "--scope",
        "write",
        "--json",
    )
    assert code == 0
    key = json.loads(out)
    me = client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})
    assert me.status_code == 200 and me.json()["key"]["project_id"] == project["id"]

    code, out, _ = run(settings, "keys", "list", "--project", project["id"], "--json")
    assert code == 0
    listed = json.loads(out)
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["key"] not in out

    code, out, _ = run(settings, "keys", "list", "--project", "ops")
    assert code == 0 and "deploy" in out

    code, out, _ = run(settings, "keys", "revoke", key["id"])
    assert code == 0
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]}).status_code == 401

    code, _, _ = run(
        settings, "keys", "create", "--project", "ops", "--name", "x", "--scope", "root"
    )
    assert code == 2
    code, _, err = run(
        settings, "keys", "create", "--project", "nope", "--name", "x", "--scope", "read"
    )
    assert code == 1 and "no project" in err


def test_commands_refuse_an_unmigrated_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"TASKLEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'blank.db'}"}
    result = CliRunner().invoke(cli, ["users", "create", "--email", "a@b.c"], env=env)
    assert result.exit_code == 1
    assert "taskledger db upgrade" in result.stderr
    assert "Traceback" not in result.output
