"""``taskledger retention``: preview the policy, run it (after confirmation), read the audit log."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click
from rich.table import Table

from taskledger.cli.base import EXIT_REFUSED, CliContext, emit_json, pass_ctx, progress_bar
from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.audit import list_audit
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.plan.preview import PlanPreview
from taskledger.retention.policy.load import load_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy
from taskledger.schemas.retention import RetentionRunRead
from taskledger.store.engine import read_only
from taskledger.store.models import RetentionRun


def cli_actor() -> str:
    """How the audit log names a command-line caller."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


F = TypeVar("F", bound=Callable[..., Any])


def policy_options(command: F) -> F:
    """``--preset NAME`` / ``--policy FILE``; neither means TASKLEDGER_RETENTION_POLICY."""
    command = click.option(
        "--policy",
        "policy_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="A TOML policy file.",
    )(command)
    return click.option(
        "--preset", type=click.Choice(sorted(PRESETS)), default=None, help="A built-in policy."
    )(command)


def choose_policy(obj: CliContext, preset: str | None, policy_file: str | None) -> Policy:
    if preset and policy_file:
        raise click.UsageError("give --preset or --policy, not both")
    return load_policy(preset or policy_file or obj.settings.retention_policy)


@click.group()
def retention() -> None:
    """Preview and run retention; read its audit log."""


def render_preview(obj: CliContext, result: PlanPreview) -> None:
    table = Table(
        "rule",
        "table",
        "action",
        "matched",
        "held",
        "protected",
        "oldest",
        "newest",
        "archive",
        title=f"policy {result.plan.policy.name} — plan {result.plan_id}",
    )
    for rule in result.rules:
        size = f"~{rule.estimated_archive_bytes / 1e6:.1f} MB" if rule.archive else "no archive"
        table.add_row(
            rule.name,
            rule.table,
            rule.action,
            str(rule.matched),
            str(rule.held),
            str(rule.protected),
            _when(rule.oldest),
            _when(rule.newest),
            size,
        )
    obj.console.print(table)


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "-"


@retention.command("preview")
@policy_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def preview_cmd(
    obj: CliContext, preset: str | None, policy_file: str | None, as_json: bool
) -> None:
    """Show what the policy would do, rule by rule. Changes nothing (but is audited)."""
    request = RetentionRequest(
        actor=cli_actor(),
        trigger=RetentionTrigger.CLI,
        policy=choose_policy(obj, preset, policy_file),
        archive=ArchiveTarget.from_settings(obj.settings),
    )
    result = preview_policy(obj.sessions(), request)
    if as_json:
        emit_json(result.to_dict())
    else:
        render_preview(obj, result)


@retention.command("run")
@policy_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Allow rules that delete more than max_table_fraction of their table.",
)
@click.option("--reason", default=None, help="Why (required with --force; audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def run_cmd(
    obj: CliContext,
    preset: str | None,
    policy_file: str | None,
    yes: bool,
    force: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Preview, confirm, then archive and delete, scrub or expire, batch by batch."""
    request = RetentionRequest(
        actor=cli_actor(),
        trigger=RetentionTrigger.CLI,
        reason=reason,
        policy=choose_policy(obj, preset, policy_file),
        archive=ArchiveTarget.from_settings(obj.settings),
        safeguards=Safeguards.from_settings(obj.settings, force=force),
    )
    sessions = obj.sessions()
    result = preview_policy(sessions, request)
    if not as_json:
        render_preview(obj, result)
    if not yes:
        if not sys.stdin.isatty():
            click.echo("refused: not confirmed (pass --yes to run without a prompt)", err=True)
            sys.exit(EXIT_REFUSED)
        if not click.confirm(f"Apply plan {result.plan_id} to {result.total} rows?"):
            click.echo("refused: not confirmed", err=True)
            sys.exit(EXIT_REFUSED)
    show = sys.stderr.isatty() and not as_json
    with progress_bar(show) as bar:
        task = bar.add_task("rows", total=result.total)
        confirmed = replace(request.confirming(result), progress=lambda _r, n: bar.advance(task, n))
        report = execute_policy(obj.engine, sessions, confirmed)
    if as_json:
        emit_json(report.to_dict())
        return
    for rule in report.rules:
        click.echo(
            f"{rule.name}: {rule.action} {rule.affected} {rule.table} rows"
            + ("" if rule.archive else " (not archived)")
        )
    click.echo(
        f"outcome {report.outcome}; audit row {report.retention_run_id}; "
        f"archive {report.archive_uri or '(nothing archived)'}"
    )


def _audit_row(row: RetentionRun) -> dict[str, Any]:
    """One audit row as ``retention runs --json`` prints it: the API's ``RetentionRunRead``,
    its ``policy_name`` under the name this command documents, ``policy``."""
    fields = RetentionRunRead.model_validate(row).model_dump()
    return {("policy" if key == "policy_name" else key): value for key, value in fields.items()}


@retention.command("runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def runs_cmd(obj: CliContext, limit: int, as_json: bool) -> None:
    """The audit log: previews, executions and restores, newest first."""
    with read_only(obj.sessions())() as session:
        rows, _ = list_audit(session, limit=limit, cursor=None)
    if as_json:
        emit_json([_audit_row(r) for r in rows])
        return
    table = Table("id", "started", "mode", "trigger", "actor", "policy", "outcome", "archive")
    for r in rows:
        table.add_row(
            str(r.id),
            _when(r.started_at),
            r.mode,
            r.trigger,
            r.actor,
            r.policy_name or "-",
            r.outcome,
            r.archive_uri or "-",
        )
    obj.console.print(table)
