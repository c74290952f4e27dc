"""``taskledger archive list|verify`` and ``taskledger restore``: read archives, put rows back."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from taskledger.cli.base import (
    EXIT_ERROR,
    CliContext,
    emit_json,
    json_option,
    pass_ctx,
    progress_bar,
)

if TYPE_CHECKING:
    from taskledger.retention.archive.reader import ArchiveSummary, VerifyReport
    from taskledger.retention.restore.report import RestoreReport


#: ``retention.restore.RESTORABLE``, written out so that ``--help`` need not import the engine
#: (tests/cli/test_startup.py keeps the two equal).
RESTORABLE_TABLES = (
    "agents",
    "rooms",
    "tasks",
    "agent_sessions",
    "api_keys",
    "room_participants",
    "runs",
    "task_dependencies",
    "agent_connections",
    "instructions",
    "acknowledgements",
)


def archive_location(uri: str, root: str) -> str:
    """The archive ``uri`` as the command line reads it.

    A URL (``s3://``, ``file://``) or an absolute path is taken as it is: an operator may read
    an archive anywhere. A relative one names an archive under the archive root ``root``, as in
    the API (``2026/12/<run id>``); if there is none there but the path exists from the working
    directory, that one is read.
    """
    from pathlib import Path
    from urllib.parse import urlsplit

    from taskledger.retention.archive.stores import InvalidArchiveURI, confine

    if not uri.strip() or len(urlsplit(uri).scheme) > 1:
        return uri  # a URL, or nothing: open_store says what is wrong with it
    local = Path(uri).expanduser()
    if local.is_absolute():
        return uri
    try:
        under_root = confine(uri, root)  # read as the API reads it
    except InvalidArchiveURI:
        return uri  # it climbs out of the root: from the working directory, then
    in_root = urlsplit(root).scheme.lower() != "s3" and Path(under_root).exists()
    return uri if local.exists() and not in_root else under_root


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
@json_option
@pass_ctx
def list_cmd(obj: CliContext, as_json: bool) -> None:
    """Every archive under TASKLEDGER_ARCHIVE_URL, newest first."""
    from rich.table import Column, Table

    from taskledger.retention.archive.reader import list_archives

    found = list_archives(
        obj.settings.resolved_archive_url, s3_endpoint_url=obj.settings.archive.s3_endpoint_url
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
@json_option
@pass_ctx
def verify_cmd(obj: CliContext, uri: str, as_json: bool) -> None:
    """Check every checksum and row count of the archive at URI (absolute, or relative to the
    archive root); exit 1 on any mismatch."""
    from taskledger.retention.archive.reader import verify as verify_archive

    location = archive_location(uri, obj.settings.resolved_archive_url)
    report = verify_archive(location, s3_endpoint_url=obj.settings.archive.s3_endpoint_url)
    mismatch = f"{len(report.messages)} problems in {report.uri}"
    if as_json:
        result = verify_dict(report)
        if not report.ok:  # the one JSON document says both what was found and that it failed
            result["error"] = {"kind": "invalid", "message": mismatch, "exit_code": EXIT_ERROR}
        emit_json(result)
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
    type=click.Choice(RESTORABLE_TABLES),
    multiple=True,
    help="Restore only this table (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing.")
@json_option
@pass_ctx
def restore_cmd(
    obj: CliContext, uri: str, tables: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Verify the archive at URI (absolute, or relative to the archive root), then put its rows
    back (parents first; idempotent)."""
    from taskledger.cli.retention import cli_actor
    from taskledger.enums import RetentionTrigger
    from taskledger.retention.archive.reader import read_manifest
    from taskledger.retention.restore.restore import restore

    obj.sessions()  # the schema must be current before anything is written
    s3 = obj.settings.archive.s3_endpoint_url
    location = archive_location(uri, obj.settings.resolved_archive_url)
    show = sys.stderr.isatty() and not as_json
    total = 0
    if show:
        files = read_manifest(location, s3_endpoint_url=s3).files
        total = sum(p.rows for p in files if not tables or p.table in tables)
    with progress_bar(show) as bar:
        task = bar.add_task("rows", total=total)
        report = restore(
            obj.engine,
            location,
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
    from rich.table import Table

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
