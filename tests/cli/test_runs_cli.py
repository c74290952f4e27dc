"""``taskledger generate`` and ``taskledger runs export|import`` on a real database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.settings import Settings
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Project,
    Run,
    Task,
    TaskDependency,
    User,
)

COMPARED = (
    "task",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "inputs",
    "outputs_uri",
    "log_excerpt",
    "approval_state",
    "approver",
    "webhook_notified_at",
)


def run(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _owner(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(User(email="owner@example.com", password_hash="x", is_superuser=True))


def test_generate_fills_every_table(settings: Settings, engine: Engine) -> None:
    _owner(engine)
    code, out, err = run(
        settings,
        "generate",
        "--runs",
        "2500",
        "--days",
        "30",
        "--project",
        "demo",
        "--seed",
        "4",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    with Session(engine) as session:
        for model in (
            Agent,
            Task,
            TaskDependency,
            AgentSession,
            AgentConnection,
            Instruction,
            Acknowledgement,
        ):
            assert (session.scalar(select(func.count()).select_from(model)) or 0) > 0, model
        assert session.scalar(select(func.count()).select_from(Run)) == 2500
        statuses = set(session.scalars(select(Run.status).distinct()))
        assert {"completed", "failed", "running"} <= statuses
        oldest = session.scalar(select(func.min(Run.started_at)))
        newest = session.scalar(select(func.max(Run.started_at)))
        assert oldest is not None and newest is not None
        assert 25 <= (newest - oldest).days <= 30
    assert report["counts"]["runs"] == 2500
    # A second call adds to the same project.
    code, _, _ = run(settings, "generate", "--runs", "10", "--project", "demo")
    assert code == 0
    code, _, err = run(settings, "generate", "--runs", "-1")
    assert code == 2


def test_ndjson_round_trip_through_import(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _owner(engine)
    assert (
        run(
            settings, "generate", "--runs", "1200", "--days", "5", "--project", "src", "--seed", "9"
        )[0]
        == 0
    )
    assert run(settings, "projects", "create", "dst", "--owner", "owner@example.com")[0] == 0
    for fmt in ("ndjson", "csv"):
        path = tmp_path / f"runs.{fmt}"
        code, _, err = run(
            settings, "runs", "export", "--project", "src", "--format", fmt, "-o", str(path)
        )
        assert code == 0, err
        assert "wrote 1200 runs" in err
        code, out, err = run(settings, "runs", "import", str(path), "--project", "dst", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["read"] == 1200
        assert report["created"] == (1200 if fmt == "ndjson" else 0)  # the CSV repeats them
        assert report["existing"] == (0 if fmt == "ndjson" else 1200)
        assert report["unlinked"] > 0  # agents of "src" do not exist in "dst"
    with Session(engine) as session:
        ids = {p.name: p.id for p in session.scalars(select(Project))}

        def rows(name: str) -> list[tuple[object, ...]]:
            stmt = (
                select(*[getattr(Run, c) for c in COMPARED])
                .where(Run.project_id == ids[name])
                .order_by(Run.started_at, Run.run_id)
            )
            return [tuple(r) for r in session.execute(stmt)]

        assert rows("src") == rows("dst")


def test_export_to_stdout_and_bad_input(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    _owner(engine)
    run(settings, "generate", "--runs", "50", "--project", "p", "--seed", "1")
    code, out, _ = run(
        settings, "runs", "export", "--project", "p", "--status", "failed", "--format", "ndjson"
    )
    assert code == 0
    assert all(json.loads(line)["status"] == "failed" for line in out.splitlines())
    assert run(settings, "runs", "export", "--project", "nope")[0] == 1
    assert run(settings, "runs", "export", "--project", "p", "--status", "weird")[0] == 2
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"task": "ok"}\nnot json\n')
    code, _, err = run(settings, "runs", "import", str(broken), "--project", "p")
    assert code == 1 and "line 2" in err
    invalid = tmp_path / "invalid.ndjson"
    invalid.write_text('{"task": "ok"}\n{"task": "x", "status": "bogus"}\n')
    code, _, err = run(settings, "runs", "import", str(invalid), "--project", "p")
    assert code == 1 and "line" in err and "status" in err
    unknown = tmp_path / "runs.txt"
    unknown.write_text("")
    code, _, err = run(settings, "runs", "import", str(unknown), "--project", "p")
    assert code == 1 and "--format" in err
