"""``taskledger retention preview|run|runs`` and ``taskledger holds`` against real databases."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.settings import Settings
from taskledger.store.models import Run
from tests.retention.engine_helpers import count, populated


def run(
    settings: Settings, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
        **(env or {}),
    }
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_preview_run_and_audit(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=600, days=300)
    code, out, err = run(settings, "retention", "preview", "--preset", "ops", "--json")
    assert code == 0, err
    preview = json.loads(out)
    matched = sum(r["matched"] for r in preview["rules"])
    assert matched > 0 and preview["plan_id"]
    assert {"name", "table", "action", "matched", "held"} <= set(preview["rules"][0])

    code, out, _ = run(settings, "retention", "preview", "--preset", "ops")
    assert code == 0 and "plan" in out and "ops" in out

    before = count(engine, Run)
    code, _, err = run(settings, "retention", "run", "--preset", "ops", stdin="")
    assert code == 3 and "--yes" in err  # no terminal, no --yes: refused, nothing done
    assert count(engine, Run) == before

    code, out, err = run(
        settings,
        "retention",
        "run",
        "--preset",
        "ops",
        "--yes",
        "--json",
        "--force",
        "--reason",
        "test data is old",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["outcome"] == "ok" and report["archive_uri"]
    assert sum(r["affected"] for r in report["rules"]) == matched
    assert {"name", "table", "action", "affected"} <= set(report["rules"][0])
    assert count(engine, Run) == before - matched

    code, out, _ = run(settings, "retention", "runs", "--json")
    log = json.loads(out)
    assert [r["mode"] for r in log][:2] == ["execute", "preview"]
    assert log[0]["trigger"] == "cli" and log[0]["actor"].startswith("cli")
    code, out, _ = run(settings, "retention", "runs")
    assert code == 0 and "execute" in out


def test_policy_file_and_errors(settings: Settings, engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    populated(engine, runs=100, days=100)
    policy = tmp_path / "keep.toml"
    policy.write_text(
        'name = "short"\n[[rule]]\nname = "x"\ntable = "runs"\n'
        'older_than = "30d"\naction = "delete"\n'
    )
    code, out, _ = run(settings, "retention", "preview", "--policy", str(policy), "--json")
    assert code == 0 and json.loads(out)["policy"] == "short"
    policy.write_text(
        '[[rule]]\nname = "x"\ntable = "runz"\nolder_than = "30d"\naction = "delete"\n'
    )
    code, _, err = run(settings, "retention", "preview", "--policy", str(policy))
    assert code == 1 and "runz" in err and "Traceback" not in err
    code, _, err = run(settings, "retention", "preview", "--preset", "ops", "--policy", str(policy))
    assert code == 2
    code, _, err = run(settings, "retention", "preview", "--preset", "bogus")
    assert code == 2


def test_holds_commands(settings: Settings, engine: Engine) -> None:
    project_id = populated(engine, runs=300, days=300)
    with Session(engine) as session:
        run_pk = session.scalar(select(Run.id).where(Run.status == "completed").limit(1))
    code, out, err = run(
        settings,
        "holds",
        "add",
        "--scope",
        "project",
        "--id",
        str(project_id),
        "--reason",
        "audit 2025",
        "--json",
    )
    assert code == 0, err
    hold = json.loads(out)
    code, _, _ = run(
        settings, "holds", "add", "--scope", "run", "--id", str(run_pk), "--reason", "case"
    )
    assert code == 0
    code, out, _ = run(settings, "holds", "list", "--active", "--json")
    assert len(json.loads(out)) == 2
    code, out, _ = run(
        settings,
        "retention",
        "run",
        "--preset",
        "ops",
        "--yes",
        "--json",
        "--force",
        "--reason",
        "test data is old",
    )
    assert sum(r["affected"] for r in json.loads(out)["rules"]) == 0  # all of it is held
    code, out, _ = run(settings, "holds", "release", str(hold["id"]))
    assert code == 0
    code, _, err = run(settings, "holds", "release", str(hold["id"]))
    assert code == 1 and "already released" in err
    code, _, err = run(
        settings, "holds", "add", "--scope", "agent", "--id", "nope", "--reason", "x"
    )
    assert code == 1
    code, out, _ = run(
        settings,
        "retention",
        "run",
        "--preset",
        "ops",
        "--yes",
        "--json",
        "--force",
        "--reason",
        "test data is old",
    )
    affected = sum(r["affected"] for r in json.loads(out)["rules"])
    assert affected > 0
    with Session(engine) as session:
        assert session.get(Run, run_pk) is not None  # the run hold still stands


def test_preview_estimates_archive_size_at_the_configured_gzip_level(
    settings: Settings, engine: Engine
) -> None:
    """The estimate is what the parts would take at TASKLEDGER_ARCHIVE_GZIP_LEVEL: level 1
    compresses less than level 9."""
    populated(engine, runs=600, days=300)
    estimates = {}
    for level in ("1", "9"):
        code, out, err = run(
            settings,
            "retention",
            "preview",
            "--preset",
            "ops",
            "--json",
            env={"TASKLEDGER_ARCHIVE_GZIP_LEVEL": level},
        )
        assert code == 0, err
        rules = json.loads(out)["rules"]
        estimates[level] = {r["name"]: r["estimated_archive_bytes"] for r in rules if r["archive"]}
    assert estimates["1"].keys() == estimates["9"].keys()
    assert any(estimates["1"].values())
    for name, fast in estimates["1"].items():
        assert fast >= estimates["9"][name], name
    assert sum(estimates["1"].values()) > sum(estimates["9"].values())


def test_policy_takes_a_file_or_a_preset_name(settings: Settings, engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    populated(engine, runs=50, days=50)
    code, out, err = run(settings, "retention", "preview", "--policy", "scientific", "--json")
    assert code == 0, err
    assert json.loads(out)["policy"] == "scientific"
    for value in ("scientifc", str(tmp_path), str(tmp_path / "missing.toml")):
        code, out, err = run(settings, "retention", "preview", "--policy", value)
        assert code == 2, (value, err)
        assert "--policy" in err and "default, development, ops, scientific" in err
