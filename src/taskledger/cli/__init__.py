"""The ``taskledger`` command line: one module per noun, registered on one Click group.

Exit codes: 0 ok, 1 error, 2 usage, 3 refused by a safeguard or a lock.
"""

from __future__ import annotations

from taskledger.cli.archive import archive, restore_cmd
from taskledger.cli.base import cli
from taskledger.cli.collect import collect
from taskledger.cli.db import db
from taskledger.cli.generate import generate
from taskledger.cli.holds import holds
from taskledger.cli.keys import keys
from taskledger.cli.projects import projects
from taskledger.cli.retention import retention
from taskledger.cli.rooms import rooms
from taskledger.cli.runs import runs
from taskledger.cli.serve import serve
from taskledger.cli.stats import stats
from taskledger.cli.users import users

for command in (
    archive,
    collect,
    db,
    generate,
    holds,
    keys,
    projects,
    restore_cmd,
    retention,
    rooms,
    runs,
    serve,
    stats,
    users,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="taskledger")


__all__ = ["cli", "main"]
