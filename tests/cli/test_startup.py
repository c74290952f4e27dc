"""The command line starts without loading the server or the engine: what ``import
taskledger.cli`` pulls in is checked here (the time it takes is measured by bench/cli_start.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from taskledger import __version__
from taskledger.cli import cli
from taskledger.cli.archive import RESTORABLE_TABLES
from taskledger.cli.retention import PRESET_NAMES
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.restore.judge import RESTORABLE

#: Heavy packages that a command imports when it runs, never when the CLI is defined.
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "pydantic_settings",
    "rich",
    "httpx",
    "taskledger.api",
    "taskledger.retention",
    "taskledger.services",
    "taskledger.store",
    "taskledger.settings",
)


def _python(code: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_the_cli_loads_neither_the_server_nor_the_engine(tmp_path: Path) -> None:
    code = "import json, sys\nimport taskledger.cli\nprint(json.dumps(sorted(sys.modules)))\n"
    loaded = json.loads(_python(code, tmp_path))
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_neither(tmp_path: Path, args: list[str]) -> None:
    code = (
        "import json, sys\n"
        "from taskledger.cli import cli\n"
        f"try:\n    cli.main({args!r}, prog_name='taskledger')\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert (
        (__version__ in result.stdout) if args == ["--version"] else ("Commands:" in result.stdout)
    )
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    assert [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


def test_the_names_written_out_for_help_match_the_engine() -> None:
    assert sorted(PRESET_NAMES) == sorted(PRESETS)
    assert sorted(RESTORABLE_TABLES) == sorted(RESTORABLE)


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.extend(_leaf_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


LEAVES = _leaf_commands(cli)


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert "--json" in options
