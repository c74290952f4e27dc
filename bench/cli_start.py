"""CLI start-up (SPEC section 10): ``taskledger --version`` and ``--help`` cost at most 2x the CPU
of ``python -c "import click"``, and every command's ``--help`` prints within 1 s.

Commands that read the database (``db current``, ``stats``, ...) are timed too, on a fresh SQLite
database, without a target: their whole run bounds the time to their first output.

Each command runs in a child process, as a user would run it. Its cost is the user + system CPU
time the child used (the change in ``getrusage(RUSAGE_CHILDREN)`` across the run), so other work
on the machine does not count, and the wall time until it exits (for the 1 s target, which is
what a user waits). The baseline, ``python -c "import click"``, runs in the same rounds,
interleaved with the commands, with the same interpreter; medians of ``--repeat`` rounds are
compared. The children run in an empty working directory with a fresh data dir, so no ``.env``
file or existing database is read.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from benchlib import Target, console, ms, print_table, times

CPU_TARGET = Target(2)  # x the CPU of `python -c "import click"`
WALL_TARGET = Target(1.0)  # seconds until a command's --help has printed
BASELINE = "python -c 'import click'"
#: Commands that only read, run on a migrated, empty SQLite database.
READING = (
    ["db", "current"],
    ["archive", "list"],
    ["holds", "list"],
    ["retention", "runs"],
    ["stats", "--json"],
    ["retention", "preview", "--json"],
)


def taskledger_command() -> list[str]:
    """The installed ``taskledger`` script next to this interpreter, or ``python -m``."""
    script = Path(sys.executable).with_name("taskledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskledger"]


def command_paths() -> list[list[str]]:
    """Every command and sub-command of the CLI, as argument lists (``["db", "upgrade"]``)."""
    from taskledger.cli import cli

    found: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli, [])
    return found


def run_child(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """CPU (user + system) and wall seconds of one child process running ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def measure(
    commands: dict[str, list[str]], repeat: int, cwd: str, env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    """Median CPU and wall seconds of each command, in ``repeat`` interleaved rounds."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for argv in commands.values():  # one warm-up round: the page cache, .pyc files
        run_child(argv, cwd, env)
    for _ in range(repeat):
        for name, argv in commands.items():
            samples[name].append(run_child(argv, cwd, env))
    return {
        name: (statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
        for name, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="rounds (default 10)")
    args = parser.parse_args()
    taskledger = taskledger_command()
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-cli-") as tmp:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TASKLEDGER_") and key != "ADMIN_API_KEY"
        }
        env["TASKLEDGER_DATA_DIR"] = str(Path(tmp) / "data")
        top = {
            BASELINE: [sys.executable, "-c", "import click"],
            "taskledger --version": [*taskledger, "--version"],
            "taskledger --help": [*taskledger, "--help"],
        }
        subcommands = {
            f"taskledger {' '.join(path)} --help": [*taskledger, *path, "--help"]
            for path in command_paths()
        }
        console.print(
            f"[bold]CLI start-up[/]: {len(top) - 1} commands against the baseline, then "
            f"{len(subcommands)} commands' --help; median of {args.repeat} rounds"
        )
        first = measure(top, args.repeat, tmp, env)
        rest = measure(subcommands, max(3, args.repeat // 2), tmp, env)
        run_child([*taskledger, "db", "upgrade"], tmp, env)
        reading = measure(
            {f"taskledger {' '.join(a)}": [*taskledger, *a] for a in READING},
            max(3, args.repeat // 2),
            tmp,
            env,
        )
    base_cpu = first[BASELINE][0]
    rows = [[BASELINE, ms(base_cpu), ms(first[BASELINE][1]), times(1.0), ""]]
    for name in list(top)[1:]:
        cpu, wall = first[name]
        ratio = cpu / base_cpu
        rows.append([name, ms(cpu), ms(wall), times(ratio), CPU_TARGET.verdict(ratio)])
    print_table(
        f"Start-up CPU (user + system), median of {args.repeat}",
        ["command", "CPU", "wall", "÷ baseline", "target"],
        rows,
    )
    help_rows = [
        [name, ms(cpu), ms(wall), WALL_TARGET.verdict(wall)]
        for name, (cpu, wall) in sorted(rest.items(), key=lambda item: -item[1][1])
    ]
    print_table(
        "Every command's --help, slowest first (target: printed within 1 s)",
        ["command", "CPU", "wall", "target"],
        help_rows,
    )
    print_table(
        "Commands that read a fresh SQLite database, whole run (no target)",
        ["command", "CPU", "wall"],
        [[name, ms(cpu), ms(wall)] for name, (cpu, wall) in reading.items()],
    )


if __name__ == "__main__":
    main()
