"""``taskledger runs``: export run history to CSV or NDJSON, import it back, and prune it."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx, progress_bar
from taskledger.cli.params import Timestamp
from taskledger.enums import ExportFormat, RunStatus, values
from taskledger.errors import NotFoundError, SafeguardRefused, ValidationFailed

if TYPE_CHECKING:
    import uuid

    from taskledger.retention.execute.deletes import PrunePreview
    from taskledger.retention.policy.rules import Policy
    from taskledger.schemas.runs import RunFilters
    from taskledger.store.models import Project


@click.group()
def runs() -> None:
    """Export, import and prune run history."""


def _project(obj: CliContext, name_or_id: str) -> Project:
    from taskledger.services import projects as projects_service

    with obj.sessions().begin() as session:
        project = projects_service.find_project(session=session, name_or_id=name_or_id)
        if project is None:
            raise NotFoundError(f"no project named {name_or_id!r}")
        session.expunge(project)
        return project


@runs.command("export")
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option(
    "--format", "fmt", type=click.Choice(values(ExportFormat)), default="csv", show_default=True
)
@click.option(
    "--since",
    type=Timestamp(),
    default=None,
    help="Started at or after (ISO 8601; UTC if no offset).",
)
@click.option(
    "--until", type=Timestamp(), default=None, help="Started before (ISO 8601; UTC if no offset)."
)
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(values(RunStatus)), help="Repeatable."
)
@click.option("--task", "tasks", multiple=True, help="Task name; repeatable.")
@click.option("--agent", default=None, help="Agent id or name.")
@click.option("--run-id", default=None)
@click.option("--approval-state", default=None)
@click.option("-q", "--query", "q", default=None, help="Substring of task or log excerpt.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after N rows.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to FILE instead of standard output.",
)
@json_option
@pass_ctx
def export(
    obj: CliContext,
    project_ref: str,
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    statuses: tuple[str, ...],
    tasks: tuple[str, ...],
    agent: str | None,
    run_id: str | None,
    approval_state: str | None,
    q: str | None,
    limit: int | None,
    output: str | None,
    as_json: bool,
) -> None:
    """Stream the project's runs, newest first, as CSV or NDJSON."""
    from taskledger.schemas.runs import RunFilters

    project = _project(obj, project_ref)
    filters = RunFilters(
        since=since,
        until=until,
        status=[RunStatus(s) for s in statuses],
        task=list(tasks),
        agent=agent,
        run_id=run_id,
        approval_state=approval_state,
        q=q,
    )
    if output is None:
        sys.stdout.flush()  # the export goes to the bytes underneath
        stdout = sys.stdout.buffer
        _write(obj, project.id, filters, ExportFormat(fmt), limit, stdout, progress=False)
        stdout.flush()
        return
    from pathlib import Path

    show = sys.stderr.isatty() and not as_json
    with Path(output).open("wb") as handle:
        written = _write(obj, project.id, filters, ExportFormat(fmt), limit, handle, progress=show)
    if as_json:
        emit_json({"written": written, "output": str(output), "format": fmt})
    else:
        click.echo(f"wrote {written} runs to {output}", err=True)


def _write(
    obj: CliContext,
    project_id: uuid.UUID,
    filters: RunFilters,
    fmt: ExportFormat,
    limit: int | None,
    handle: IO[bytes],
    *,
    progress: bool,
) -> int:
    from sqlalchemy import and_, func, select

    from taskledger.services import run_export
    from taskledger.services.runs import filter_conditions
    from taskledger.store.models import Run

    total = None
    if progress:
        with obj.engine.connect() as conn:
            total = conn.scalar(
                select(func.count())
                .select_from(Run)
                .where(and_(*filter_conditions(project_id, filters)))
            )
        total = min(total or 0, limit) if limit else total
    written = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("runs", total=total)
        for data, rows in run_export.export_chunks(
            obj.engine, project_id, filters, fmt, limit=limit
        ):
            handle.write(data)
            bar.advance(task, rows)
            written += rows
    return written


@runs.command("import")
@click.argument("file_name", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "ndjson"]),
    default="auto",
    show_default=True,
    help="auto: from the file name (.csv, .ndjson, .jsonl).",
)
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@json_option
@pass_ctx
def import_(
    obj: CliContext, file_name: str, project_ref: str, fmt: str, batch_size: int, as_json: bool
) -> None:
    """Record the runs of an export FILE (CSV or NDJSON) into a project; rows already there (in
    their own project, or by idempotency key) are skipped, so running it again records nothing
    twice."""
    from pathlib import Path

    from taskledger.services import run_import

    file = Path(file_name)
    project = _project(obj, project_ref)
    fmt = run_import.detect_format(file, fmt)
    show = sys.stderr.isatty() and not as_json
    with file.open(encoding="utf-8", newline="") as handle, progress_bar(show) as bar:
        task = bar.add_task("runs", total=None)
        try:
            report = run_import.import_runs(
                obj.sessions(),
                project,
                run_import.iter_records(handle, fmt),
                batch_size=batch_size,
                on_batch=lambda n: bar.advance(task, n),
            )
        except ValidationFailed as exc:
            # Earlier batches are recorded; the message says where this one went wrong.
            raise ValidationFailed(f"{file}: {exc.detail}") from None
    result = {
        "read": report.read,
        "created": report.created,
        "existing": report.existing,
        "unlinked": report.unlinked,
    }
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"read {report.read} runs: {report.created} recorded, {report.existing} "
            f"already present, {report.unlinked} references to unknown agents or tasks "
            "dropped"
        )


@runs.command("prune")
@click.option(
    "--before",
    "cutoff",
    metavar="DATE",
    type=Timestamp(cutoff=True),
    required=True,
    help="Delete runs started before this: ISO 8601 with an offset or Z.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Lift max_rows_per_run and max_table_fraction of the policy in force for this prune.",
)
@click.option("--reason", default=None, help="Why (required with --force; audited).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_ctx
def prune(
    obj: CliContext,
    cutoff: datetime,
    force: bool,
    reason: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete every unheld run started before --before, archived first and audited: the seed
    endpoint DELETE /agents/tasks/before, with --force to get past its caps."""
    from taskledger.cli.retention import cli_actor, confirm
    from taskledger.enums import RetentionTrigger
    from taskledger.retention.archive.stores import ArchiveTarget
    from taskledger.retention.execute.deletes import preview_prune, prune_runs_before
    from taskledger.retention.execute.request import RetentionRequest, Safeguards
    from taskledger.retention.policy.load import load_policy
    from taskledger.retention.safeguards.alerts import Alerter
    from taskledger.retention.safeguards.guard import SpikeGuard

    sessions = obj.sessions()
    policy = load_policy(obj.settings.retention.policy)
    counted = preview_prune(sessions, cutoff)
    refused = _refusal(policy, counted, force=force, reason=reason)
    if not as_json:
        click.echo(
            f"{counted.matched} of {counted.table_rows} runs started before "
            f"{cutoff.isoformat()} would be archived and deleted ({counted.held} held runs are "
            f"kept); policy in force {policy.name!r}"
        )
    if refused is None and not yes:
        # A prune the caps refuse is refused (and audited) below without asking.
        confirm(f"Delete {counted.matched} runs?")
    alerter = Alerter(webhook_url=obj.settings.retention.alert_webhook_url, metrics=None)
    guard = SpikeGuard(
        obj.engine,
        max_rows=obj.settings.retention.spike_max_rows,
        window_seconds=obj.settings.retention.spike_window_seconds,
        alerter=alerter,
    )
    show = sys.stderr.isatty() and not as_json
    try:
        with progress_bar(show) as bar:
            task = bar.add_task("runs", total=counted.matched)
            request = RetentionRequest(
                actor=cli_actor(),
                trigger=RetentionTrigger.CLI,
                reason=reason,
                policy=policy,
                archive=ArchiveTarget.from_settings(obj.settings),
                safeguards=Safeguards.from_settings(obj.settings, force=force, spike_guard=guard),
                progress=lambda _rule, n: bar.advance(task, n),
            )
            report = prune_runs_before(obj.engine, sessions, request, cutoff=cutoff)
    finally:
        alerter.close()  # deliver a spike alert before exiting
    result = {
        "deleted": report.deleted,
        "cutoff": cutoff.isoformat(),
        "archive_uri": report.archive_uri,
        "retention_run_id": report.retention_run_id,
    }
    if report.dry_run:
        result |= {"dry_run": True, "would_delete": report.would_delete}
    if as_json:
        emit_json(result)
    elif report.dry_run:
        click.echo(
            f"dry run (TASKLEDGER_RETENTION_DRY_RUN_ONLY): would delete {report.would_delete} "
            f"runs, deleted none; audit row {report.retention_run_id}"
        )
    else:
        click.echo(
            f"deleted {report.deleted} runs; audit row {report.retention_run_id}; "
            f"archive {report.archive_uri or '(nothing archived)'}"
        )


def _refusal(
    policy: Policy, counted: PrunePreview, *, force: bool, reason: str | None
) -> str | None:
    """Why the caps will refuse the prune, if they will."""
    try:
        counted.check_caps(policy, force=force, reason=reason)
    except SafeguardRefused as exc:
        return str(exc.detail)
    return None
