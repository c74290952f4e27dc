"""``taskledger stats``: storage per retained table, the age of its rows, what the policy would
remove, and what is held."""

from __future__ import annotations

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value = int(value / 1024)
    return f"{value} TB"


@click.command()
@click.option("--exact", is_flag=True, help="Count rows (and SQLite sizes) exactly.")
@json_option
@pass_ctx
def stats(obj: CliContext, exact: bool, as_json: bool) -> None:
    """Rows, bytes, age histogram, eligible and held rows per retained table."""
    from rich.table import Table

    from taskledger.retention.policy.load import load_policy
    from taskledger.retention.stats import BUCKETS, collect_stats

    obj.sessions()  # the schema must be current
    report = collect_stats(obj.engine, load_policy(obj.settings.retention.policy), exact=exact)
    if as_json:
        emit_json(report.to_dict())
        return
    table = Table(
        "table",
        "rows",
        "bytes",
        *(label for label, _, _ in BUCKETS),
        "eligible",
        "held",
        title=f"policy {report.policy}",
    )
    for t in [*report.tables, report.audit_log]:
        # "~": the planner's estimate (PostgreSQL without --exact), not a count.
        approx = "" if t.rows_exact else "~"
        around = "" if t.histogram_exact else "~"
        table.add_row(
            t.table,
            f"{approx}{t.rows}",
            _size(t.bytes),
            *(
                f"{around}{t.histogram[label]}" if label in t.histogram else "-"
                for label, _, _ in BUCKETS
            ),
            str(t.eligible),
            str(t.held),
        )
    obj.console.print(table)
