"""The documentation keeps up with the code: every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path

import click

from taskledger.cli import cli
from taskledger.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [
        f"TASKLEDGER_{name.upper()}"
        for name in Settings.model_fields
        if f"`TASKLEDGER_{name.upper()}`" not in text
    ]
    assert missing == []


def test_every_setting_has_a_description() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def _command_paths(group: click.Group, prefix: str) -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, path))
        else:
            paths.append(path)
    return paths


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    paths = _command_paths(cli, "taskledger")
    assert "taskledger serve" in paths
    assert [p for p in paths if f"`{p}" not in text] == []
