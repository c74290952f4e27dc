"""``taskledger archive list|verify`` and ``taskledger restore``: read archives, put rows back."""

from __future__ import annotations

import sys

import click
from rich.table import Column, Table

from taskledger.cli.base import EXIT_ERROR, CliContext, emit_json, pass_ctx, progress_bar
from taskledger.cli.retention import cli_actor
from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.reader import (
    ArchiveSummary,
    VerifyReport,
    list_archives,
    read_manifest,
)
from taskledger.retention.archive.reader import verify as verify_archive
from taskledger.retention.restore.judge import RESTORABLE
from taskledger.retention.restore.report import RestoreReport
from taskledger.retention.restore.restore import restore


@click.group()
def archive() -> None:
    """List and verify retention archives."""


def summary_dict(summary: ArchiveSummary) -> dict[str, object]:
    """One archive of ``archive list`` as JSON-ready data."""
    return {
        "uri": summary.uri,
        "run_id": summary.run_id,
        "created_at": summary.created_at.isoformat() if summary.created_at else None,
        "complete": summary.complete,
        "tables": list(summary.tables),
        "files": summary.files,
        "rows": summary.rows,
        "bytes": summary.bytes,
        "error": summary.error,
    }


@archive.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_cmd(obj: CliContext, as_json: bool) -> None:
    """Every archive under TASKLEDGER_ARCHIVE_URL, newest first."""
    found = list_archives(
        obj.settings.resolved_archive_url, s3_endpoint_url=obj.settings.s3_endpoint_url
    )
    if as_json:
        emit_json([summary_dict(s) for s in found])
        return
    table = Table(
        Column("run id", no_wrap=True), "created", "tables", "rows", "bytes", "complete", "uri"
    )
    for s in found:
        table.add_row(
            s.run_id,
            s.created_at.isoformat(timespec="seconds") if s.created_at else "-",
            ", ".join(s.tables) if not s.error else f"unreadable: {s.error}",
            str(s.rows),
            str(s.bytes),
            "yes" if s.complete else "no",
            s.uri,
        )
    obj.console.print(table)


def verify_dict(report: VerifyReport) -> dict[str, object]:
    """The outcome of ``archive verify`` as JSON-ready data."""
    return {
        "uri": report.uri,
        "run_id": report.run_id,
        "complete": report.complete,
        "ok": report.ok,
        "files": [
            {"name": f.name, "table": f.table, "rows": f.rows, "ok": f.ok, "problems": f.problems}
            for f in report.files
        ],
        "unlisted": report.unlisted,
        "problems": report.messages,
    }


@archive.command("verify")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def verify_cmd(obj: CliContext, uri: str, as_json: bool) -> None:
    """Check every checksum and row count of the archive at URI; exit 1 on any mismatch."""
    report = verify_archive(uri, s3_endpoint_url=obj.settings.s3_endpoint_url)
    if as_json:
        emit_json(verify_dict(report))
    else:
        rows = sum(f.rows for f in report.files)
        state = "complete" if report.complete else "incomplete (an interrupted run)"
        click.echo(f"{report.uri}: {len(report.files)} files, {rows} rows, {state}")
    if not report.ok:
        for line in report.messages:
            click.echo(f"mismatch: {line}", err=True)
        sys.exit(EXIT_ERROR)
    if not as_json:
        click.echo("ok: every checksum and count matches")


@click.command("restore")
@click.argument("uri")
@click.option(
    "--table",
    "tables",
    type=click.Choice(RESTORABLE),
    multiple=True,
    help="Restore only this table (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def restore_cmd(
    obj: CliContext, uri: str, tables: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Verify the archive at URI, then put its rows back (parents first; idempotent)."""
    obj.sessions()  # the schema must be current before anything is written
    s3 = obj.settings.s3_endpoint_url
    show = sys.stderr.isatty() and not as_json
    total = 0
    if show:
        files = read_manifest(uri, s3_endpoint_url=s3).files
        total = sum(p.rows for p in files if not tables or p.table in tables)
    with progress_bar(show) as bar:
        task = bar.add_task("rows", total=total)
        report = restore(
            obj.engine,
            uri,
            tables=list(tables) or None,
            dry_run=dry_run,
            s3_endpoint_url=s3,
            actor=cli_actor(),
            trigger=RetentionTrigger.CLI,
            progress=lambda _table, n: bar.advance(task, n),
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        render_restore(obj, report)


def render_restore(obj: CliContext, report: RestoreReport) -> None:
    """The per-table counts, then the summary line (naming conflicts and revoked keys)."""
    title = f"{'dry run of ' if report.dry_run else ''}restore of {report.uri}"
    table = Table(
        "table", "inserted", "restored", "skipped", "orphaned", "conflicts", "revoked", title=title
    )
    for name, counts in report.tables.items():
        table.add_row(
            name,
            str(counts.inserted),
            str(counts.restored),
            str(counts.skipped),
            str(counts.orphaned),
            str(counts.conflicts),
            str(counts.revoked),
        )
    obj.console.print(table)
    click.echo(report.summary())
