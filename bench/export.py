"""CSV export (SPEC section 10): at least 0.5x the rate of the database's own CSV writer on the
same query on SQLite and 0.8x on PostgreSQL, with peak memory flat as the runs grow 4x.

The product side is the generator that ``GET /api/v1/runs.csv`` streams
(``services.run_export.iter_csv``), consumed in-process, so no HTTP cost is counted. The
baseline runs the same query (every column of the project's runs, newest first) through the
command-line client writing CSV: ``sqlite3 -csv`` on SQLite, ``psql -c "\\copy (...) to stdout
csv"`` on PostgreSQL, output to ``/dev/null``. Peak memory is Python's (tracemalloc), measured
at N runs and again after 3N more are added.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from typing import Any

from sqlalchemy import Engine

from benchlib import (
    Target,
    arguments,
    backends,
    best_of_each,
    console,
    database_path,
    fresh_database,
    mib,
    peak_python_memory,
    print_table,
    seed_runs,
    times,
)
from taskledger.schemas.runs import RunFilters
from taskledger.services import run_export
from taskledger.services.generate import generate

TARGETS = {"sqlite": Target(0.5, at_most=False), "postgresql": Target(0.8, at_most=False)}
MEMORY_TARGET = Target(1.5)  # peak at 4N / peak at N
REPEAT = 3


def baseline_command(engine: Engine, project_id: uuid.UUID) -> list[str]:
    """The database's CLI writing the same rows as CSV to stdout."""
    columns = ", ".join(run_export.HEADER)
    if engine.dialect.name == "sqlite":
        where = f"project_id = '{project_id.hex}'"  # stored as 32 hex digits
        query = f"SELECT {columns} FROM runs WHERE {where} ORDER BY started_at DESC, id DESC"
        return ["sqlite3", "-csv", "-header", database_path(engine), query]
    query = (
        f"SELECT {columns} FROM runs WHERE project_id = '{project_id}' "
        "ORDER BY started_at DESC, id DESC"
    )
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        url,
        "-c",
        f"\\copy ({query}) to stdout csv header",
    ]


def run_baseline(command: list[str]) -> None:
    with open("/dev/null", "wb") as sink:
        subprocess.run(command, stdout=sink, check=True)


def product_export(engine: Engine, project_id: uuid.UUID) -> int:
    """Every chunk of the CSV export, consumed; returns the number of bytes."""
    return sum(len(chunk) for chunk in run_export.iter_csv(engine, project_id, RunFilters()))


def measure(engine: Engine, project_id: uuid.UUID, rows: int) -> tuple[list[Any], list[Any]]:
    command = baseline_command(engine, project_id)
    tool = command[0]
    best = best_of_each(
        {
            "product": lambda: product_export(engine, project_id),
            "baseline": lambda: run_baseline(command),
        },
        repeat=REPEAT,
    )
    ratio = best["baseline"] / best["product"]
    speed = [
        [
            f"{tool} (baseline)",
            f"{best['baseline']:.2f} s",
            f"{rows / best['baseline']:,.0f}",
            times(1.0),
            "",
        ],
        [
            "taskledger iter_csv",
            f"{best['product']:.2f} s",
            f"{rows / best['product']:,.0f}",
            times(ratio),
            TARGETS[engine.dialect.name].verdict(ratio),
        ],
    ]
    peak_n = peak_python_memory(lambda: product_export(engine, project_id))
    started = time.perf_counter()
    generate(engine, project_id, runs=3 * rows, days=180, seed=11)
    console.print(f"  added {3 * rows:,} runs in {time.perf_counter() - started:.1f}s", style="dim")
    peak_4n = peak_python_memory(lambda: product_export(engine, project_id))
    growth = peak_4n / peak_n
    memory = [
        [f"{rows:,}", mib(peak_n), times(1.0), ""],
        [f"{4 * rows:,}", mib(peak_4n), times(growth), MEMORY_TARGET.verdict(growth)],
    ]
    return speed, memory


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=1_000_000)
    for backend in backends(args.backend):
        tool = "sqlite3" if backend == "sqlite" else "psql"
        if shutil.which(tool) is None:
            console.print(f"[red]{tool} is not installed: skipping {backend}[/]")
            continue
        console.print(f"[bold]{backend}[/]: CSV of {args.rows:,} runs")
        with fresh_database(backend) as engine:
            project_id = seed_runs(engine, args.rows)
            speed, memory = measure(engine, project_id, args.rows)
        print_table(
            f"CSV export on {backend}, {args.rows:,} runs (best of {REPEAT})",
            ["writer", "time", "runs/s", "÷ baseline", "target"],
            speed,
        )
        print_table(
            f"Peak Python memory of the export on {backend}",
            ["runs", "peak", "÷ at N", "target"],
            memory,
        )


if __name__ == "__main__":
    main()
