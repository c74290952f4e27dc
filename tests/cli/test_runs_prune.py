"""``taskledger runs prune``: the seed endpoint's prune from the command line, the one way to get
past its caps (``--force --reason``), archived, audited and counted in the spike window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.retention.archive.reader import read_manifest
from taskledger.settings import Settings
from taskledger.store.models import DeletionEvent, RetentionRun, Run
from tests.retention.engine_helpers import count, old_and_new_runs


def prune(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    environment = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
        **env,
    }
    result = CliRunner().invoke(cli, ["runs", "prune", *args], env=environment, input="")
    return result.exit_code, result.stdout, result.stderr


def _stamp(cutoff: datetime) -> str:
    return cutoff.isoformat().replace("+00:00", "Z")


def test_prune_forces_past_the_caps_with_a_reason(settings: Settings, engine: Engine) -> None:
    _, cutoff = old_and_new_runs(engine, old=1500, new=600)
    before = _stamp(cutoff)

    code, out, err = prune(settings, "--before", before)
    assert code == 3 and "--yes" not in err  # over a cap: refused at once, not asked
    assert "max_table_fraction" in err and "--force --reason" in err
    assert "1500 of 2100 runs" in out
    code, _, err = prune(settings, "--before", before, "--force", "--yes")
    assert code == 3 and "--reason" in err
    assert count(engine, Run) == 2100

    code, out, err = prune(
        settings, "--before", before, "--force", "--reason", "backlog", "--yes", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["deleted"] == 1500 and result["cutoff"] == cutoff.isoformat()
    assert count(engine, Run) == 600
    assert sum(p.rows for p in read_manifest(result["archive_uri"]).files) == 1500
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun).order_by(RetentionRun.id)).all()
        window = session.scalar(select(func.coalesce(func.sum(DeletionEvent.rows), 0)))
    assert [(a.trigger, a.outcome) for a in audit] == [
        ("cli", "refused"),
        ("cli", "refused"),
        ("cli", "ok"),
    ]
    assert audit[-1].id == result["retention_run_id"] and audit[-1].reason == "backlog"
    assert audit[-1].counts["forced"] is True and audit[-1].archive_uri == result["archive_uri"]
    assert window == 1500  # counted in the spike window, though never refused by it


def test_prune_within_the_caps_asks_first(settings: Settings, engine: Engine) -> None:
    _, cutoff = old_and_new_runs(engine, old=100, new=400)
    code, out, err = prune(settings, "--before", _stamp(cutoff))
    assert code == 3 and "--yes" in err and "100 of 500 runs" in out
    assert count(engine, Run) == 500
    code, out, err = prune(settings, "--before", _stamp(cutoff), "--yes")
    assert code == 0, err
    assert "deleted 100 runs" in out and count(engine, Run) == 400


def test_prune_in_dry_run_only_mode_deletes_nothing(settings: Settings, engine: Engine) -> None:
    _, cutoff = old_and_new_runs(engine, old=100, new=400)
    dry = {"TASKLEDGER_RETENTION_DRY_RUN_ONLY": "true"}
    code, out, err = prune(settings, "--before", _stamp(cutoff), "--yes", **dry)
    assert code == 0, err
    assert "would delete 100 runs, deleted none" in out and count(engine, Run) == 500
    code, out, err = prune(settings, "--before", _stamp(cutoff), "--yes", "--json", **dry)
    assert code == 0, err
    result = json.loads(out)
    assert result["deleted"] == 0 and result["dry_run"] is True and result["would_delete"] == 100
    with Session(engine) as session:
        outcomes = session.scalars(select(RetentionRun.outcome)).all()
    assert outcomes == ["dry-run", "dry-run"] and count(engine, Run) == 500


def test_prune_takes_only_iso_timestamps_with_an_offset(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    old_and_new_runs(engine, old=10, new=10)
    future = _stamp(datetime.now(UTC) + timedelta(days=1))
    for value in ("1700000000", "2020-01-01T00:00:00", "0001-01-01T00:00:00+14:00", future):
        code, _, err = prune(settings, "--before", value, "--yes")
        assert code == 2, (value, err)
        assert "--before" in err
    code, _, err = prune(settings, "--yes")
    assert code == 2 and "--before" in err
    assert count(engine, Run) == 20
