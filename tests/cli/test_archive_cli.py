"""``taskledger archive list|verify`` and ``taskledger restore`` on real databases and files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from taskledger.cli import cli
from taskledger.settings import Settings
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import mixed_policy, table_hashes


def run(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def _archive(settings: Settings, engine: Engine) -> tuple[dict[str, object], str]:
    populated(engine, runs=400, days=400)
    before = table_hashes(engine)
    _, report = run_policy(engine, mixed_policy(), Path(settings.resolved_archive_url))
    assert report.archive_uri
    return before, report.archive_uri


def test_list_verify_dry_run_and_restore(settings: Settings, engine: Engine) -> None:
    before, uri = _archive(settings, engine)

    code, out, err = run(settings, "archive", "list", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["uri"] == uri and listed["rows"] > 0 and listed["bytes"] > 0
    assert "runs" in listed["tables"] and listed["run_id"] in uri and listed["created_at"]
    code, out, _ = run(settings, "archive", "list")
    assert code == 0 and listed["run_id"] in out

    code, out, err = run(settings, "archive", "verify", uri, "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    code, out, _ = run(settings, "archive", "verify", uri)
    assert code == 0 and "ok" in out

    after_retention = table_hashes(engine)
    code, out, err = run(settings, "restore", uri, "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True and table_hashes(engine) == after_retention

    code, out, err = run(settings, "restore", uri, "--table", "runs", "--json")
    assert code == 0, err
    assert list(json.loads(out)["tables"]) == ["runs"]

    code, out, err = run(settings, "restore", uri, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"inserted", "skipped", "restored", "orphaned"} <= set(report)
    assert table_hashes(engine) == before

    code, out, _ = run(settings, "restore", uri)
    assert code == 0 and "inserted 0" in out


def test_bad_table_and_damaged_archive(settings: Settings, engine: Engine) -> None:
    _, uri = _archive(settings, engine)
    code, _, err = run(settings, "restore", uri, "--table", "users")
    assert code == 2 and "runs" in err  # a usage error listing the valid tables

    part = next(Path(uri).glob("runs-*.jsonl.gz"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    after_damage = table_hashes(engine)

    code, out, err = run(settings, "archive", "verify", uri, "--json")
    assert code == 1 and json.loads(out)["ok"] is False and part.name in err
    code, _, err = run(settings, "restore", uri)
    assert code == 1 and part.name in err and "Traceback" not in err
    assert table_hashes(engine) == after_damage

    code, _, err = run(settings, "archive", "verify", str(Path(uri).parent / "missing"))
    assert code == 1 and "no archive manifest" in err


def test_an_unlisted_part_of_an_interrupted_run_fails_verify_and_restore(
    settings: Settings, engine: Engine
) -> None:
    """A run that died on its manifest update leaves an unfinished manifest and a part it never
    listed: verify reports that part (exit 1, listed in JSON), and restore refuses, naming it."""
    _, uri = _archive(settings, engine)
    manifest_path = Path(uri) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["complete"] = False
    manifest_path.write_text(json.dumps(manifest))
    listed = Path(uri) / manifest["files"][-1]["name"]
    table, number = listed.name.removesuffix(".jsonl.gz").rsplit("-", 1)
    stray = listed.with_name(f"{table}-{int(number) + 1:05d}.jsonl.gz")
    stray.write_bytes(listed.read_bytes())
    after_retention = table_hashes(engine)

    code, out, err = run(settings, "archive", "verify", uri, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["complete"] is False
    assert report["unlisted"] == [stray.name]
    assert any(str(stray) in problem for problem in report["problems"])
    assert all(f["ok"] for f in report["files"])  # the listed parts are sound
    code, out, err = run(settings, "archive", "verify", uri)
    assert code == 1 and str(stray) in err and "not listed in the manifest" in err

    code, _, err = run(settings, "restore", uri)
    assert code == 1 and str(stray) in err and "Traceback" not in err
    assert table_hashes(engine) == after_retention

    # Moved out of the archive, the part is no longer in the way: the listed parts restore.
    stray.rename(settings.data_dir / stray.name)
    code, out, err = run(settings, "archive", "verify", uri)
    assert code == 0, err
    code, out, err = run(settings, "restore", uri, "--json")
    assert code == 0, err
    assert json.loads(out)["outcome"] == "ok"


def _run_in(settings: Settings, root: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
        "TASKLEDGER_ARCHIVE_URL": str(root),
    }
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_tables_print_whole_values_outside_a_terminal(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """CliRunner's output is not a terminal, like a pipe or a CI log: long archive URIs and
    timestamps are printed whole, each on one line, never cut to 80 columns nor wrapped."""
    root = tmp_path / ("a-long-directory-name-" * 6) / "archives"
    populated(engine, runs=400, days=400)
    _, report = run_policy(engine, mixed_policy(), root)
    uri = report.archive_uri
    assert uri and len(uri) > 160
    for args in (("archive", "list"), ("retention", "runs")):
        code, out, err = _run_in(settings, root, *args)
        assert code == 0, err
        assert "…" not in out
        assert any(uri in line for line in out.splitlines()), out
    code, out, _ = _run_in(settings, root, "holds", "list")
    assert code == 0 and "…" not in out


def test_archive_uris_relative_to_the_archive_root(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """As in the API, ``2026/12/<run>`` names an archive under the archive root; a path
    relative to the working directory still works when nothing of that name is under the root."""
    before, uri = _archive(settings, engine)
    relative = Path(uri).relative_to(Path(settings.resolved_archive_url)).as_posix()
    assert relative.count("/") == 2  # YYYY/MM/<run id>

    code, out, err = run(settings, "archive", "verify", relative, "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True and json.loads(out)["uri"] == uri
    code, out, err = run(settings, "restore", relative, "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True

    copy = tmp_path / "copied" / Path(uri).name
    shutil.copytree(uri, copy)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(settings, "archive", "verify", f"copied/{copy.name}", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True

    code, out, err = run(settings, "restore", relative, "--json")
    assert code == 0, err
    assert table_hashes(engine) == before

    code, out, err = run(settings, "archive", "verify", "2026/12/no-such-run")
    assert code == 1 and settings.resolved_archive_url in err


def test_a_failed_verify_says_so_in_its_json(settings: Settings, engine: Engine) -> None:
    _, uri = _archive(settings, engine)
    part = next(Path(uri).glob("runs-*.jsonl.gz"))
    part.write_bytes(part.read_bytes()[:-10])
    code, out, err = run(settings, "archive", "verify", uri, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and part.name in err
    assert report["error"]["kind"] == "invalid" and report["error"]["exit_code"] == 1
