"""``taskledger generate`` and ``taskledger runs export|import`` on a real database."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path

import pytest
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
    Room,
    RoomParticipant,
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
            Room,
            RoomParticipant,
        ):
            assert (session.scalar(select(func.count()).select_from(model)) or 0) > 0, model
        # Agents and the owner take part in rooms; a share of the tasks is in one.
        kinds = set(session.scalars(select(RoomParticipant.participant_type).distinct()))
        assert kinds == {"agent", "user"}
        agent_ids = set(session.scalars(select(Agent.id)))
        agents_in_rooms = set(
            session.scalars(
                select(RoomParticipant.participant_id).where(
                    RoomParticipant.participant_type == "agent"
                )
            )
        )
        assert agents_in_rooms <= agent_ids
        in_rooms = session.scalar(select(func.count()).where(Task.room_id.is_not(None)))
        tasks = session.scalar(select(func.count()).select_from(Task))
        assert in_rooms and tasks and 0 < in_rooms < tasks
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


def test_generate_on_a_fresh_database_creates_the_superuser_first(
    settings: Settings, engine: Engine
) -> None:
    """No users at all: the initial superuser is created (its password in the data dir), owns
    the new project, and the data follows in the same command."""
    from taskledger.services.bootstrap import initial_password_file
    from taskledger.services.passwords import verify_password

    code, out, err = run(settings, "generate", "--runs", "20", "--seed", "1", "--json")
    assert code == 0, err
    assert "created superuser admin@localhost" in err
    assert json.loads(out)["counts"]["runs"] == 20
    password = initial_password_file(settings).read_text().strip()
    with Session(engine) as session:
        [admin] = session.scalars(select(User)).all()
        project = session.scalars(select(Project)).one()
        assert project.owner_id == admin.id and admin.is_superuser
        assert verify_password(admin.password_hash, password)
    code, _, err = run(settings, "generate", "--runs", "5", "--project", "second")
    assert code == 0, err
    assert "created superuser" not in err


def test_import_into_its_own_project_records_nothing_twice(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """An export imported back into the project it came from: every row is recognised by its
    exported id (with the same task and run id) and skipped; imported into another project, the
    rows are new there, once."""
    _owner(engine)
    assert run(settings, "generate", "--runs", "300", "--project", "src", "--seed", "3")[0] == 0
    assert run(settings, "projects", "create", "dst", "--owner", "owner@example.com")[0] == 0
    for fmt in ("ndjson", "csv"):
        path = tmp_path / f"runs.{fmt}"
        code, _, err = run(
            settings, "runs", "export", "--project", "src", "--format", fmt, "-o", str(path)
        )
        assert code == 0, err
        code, out, err = run(settings, "runs", "import", str(path), "--project", "src", "--json")
        assert code == 0, err
        assert json.loads(out) == {"read": 300, "created": 0, "existing": 300, "unlinked": 0}
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Run)) == 300
    code, out, err = run(settings, "runs", "import", str(path), "--project", "dst", "--json")
    assert code == 0, err
    assert json.loads(out)["created"] == 300
    code, out, err = run(settings, "runs", "import", str(path), "--project", "dst", "--json")
    assert json.loads(out)["created"] == 0 and json.loads(out)["existing"] == 300
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 600


def test_an_export_of_another_database_is_not_taken_for_this_one(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Integer keys of another database may coincide with this one's: a row is only taken for
    a run still present when its task and run id match too."""
    _owner(engine)
    assert run(settings, "generate", "--runs", "10", "--project", "p", "--seed", "5")[0] == 0
    with Session(engine) as session:
        ids = list(session.scalars(select(Run.id).order_by(Run.id)))
    lines = [
        json.dumps({"id": run_pk, "task": "elsewhere", "run_id": f"other-{run_pk}"})
        for run_pk in ids
    ]
    path = tmp_path / "other.ndjson"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(settings, "runs", "import", str(path), "--project", "p", "--json")
    assert code == 0, err
    assert json.loads(out)["created"] == 10


def test_import_errors_name_the_file_the_line_and_the_field(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _owner(engine)
    run(settings, "generate", "--runs", "5", "--project", "p", "--seed", "1")
    cases = {
        "number.csv": ("task,duration_ms\nok,1\nx,abc\n", "line 3, duration_ms: not an integer"),
        "inputs.csv": ("task,inputs\nx,{oops\n", "line 2, inputs: not JSON"),
        "status.ndjson": (
            '{"task": "ok"}\n{"task": "x", "status": "bogus"}\n',
            "line 2, status: Input should be",
        ),
        "broken.ndjson": ('{"task": "ok"}\nnot json\n', "line 2: not JSON"),
        "list.ndjson": ("[1, 2]\n", "line 1: not a JSON object"),
        "binary.ndjson": (b"\xff\xfe\x00garbage\n", "not UTF-8"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        code, out, err = run(settings, "runs", "import", str(path), "--project", "p")
        assert code == 1, (name, err)
        [line] = err.splitlines()
        assert line.startswith(f"error: {path}: ") and expected in line, line
        assert "invalid literal" not in line and "{'" not in line and "Traceback" not in line
        code, out, err = run(settings, "runs", "import", str(path), "--project", "p", "--json")
        error = json.loads(out)["error"]
        assert error["kind"] == "invalid" and expected in error["message"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00+00:00"),
        ("2026-11-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00"),
        ("2026-11-01T02:00:00+02:00", "2026-11-01T00:00:00+00:00"),
        ("2026-11-01T00:00:00", "2026-11-01T00:00:00+00:00"),
        ("2026-11-01", "2026-11-01T00:00:00+00:00"),
    ],
)
def test_date_options_take_iso_8601_as_the_api_does(value: str, expected: str) -> None:
    from datetime import datetime

    from taskledger.cli.params import Timestamp

    parsed = Timestamp().convert(value, None, None)
    assert isinstance(parsed, datetime) and parsed.isoformat() == expected


def test_export_since_and_until_take_offsets(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _owner(engine)
    run(settings, "generate", "--runs", "200", "--days", "10", "--project", "p", "--seed", "2")
    with Session(engine) as session:
        middle = sorted(session.scalars(select(Run.started_at)))[100]
    counts = []
    for since in (
        middle.isoformat().replace("+00:00", "Z"),
        middle.isoformat(),
        middle.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ):
        code, out, err = run(
            settings, "runs", "export", "--project", "p", "--format", "ndjson", "--since", since
        )
        assert code == 0, (since, err)
        counts.append(len(out.splitlines()))
    assert counts == [100, 100, 100]
    code, out, err = run(settings, "runs", "export", "--project", "p", "--until", "2026-11-01Z")
    assert code == 2 and "--until" in err and "ISO 8601" in err
    code, out, err = run(settings, "runs", "export", "--project", "p", "--since", "1700000000")
    assert code == 2 and "--since" in err and "Unix time" in err
