"""``taskledger retention``: preview the policy, run it (after confirmation), read the audit log."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taskledger.cli.base import (
    CliContext,
    emit_json,
    json_option,
    pass_ctx,
    progress_bar,
)
from taskledger.errors import SafeguardRefused

if TYPE_CHECKING:
    from taskledger.retention.plan.preview import PlanPreview
    from taskledger.retention.policy.rules import Policy
    from taskledger.store.models import RetentionRun


def cli_actor() -> str:
    """How the audit log names a command-line caller."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


F = TypeVar("F", bound=Callable[..., Any])


#: The names of ``retention.policy.PRESETS``, written out so that ``--help`` need not import the
#: engine (tests/cli/test_startup.py keeps the two equal).
PRESET_NAMES = ("default", "development", "ops", "scientific")


class PolicySource(click.ParamType[str]):
    """``--policy``: the path of a TOML policy file, or the name of a preset (as
    ``TASKLEDGER_RETENTION_POLICY`` takes). Anything else is a usage error naming the presets."""

    name = "FILE|PRESET"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from pathlib import Path

        text = str(value)
        if text in PRESET_NAMES:
            return text
        path = Path(text).expanduser()
        if text.strip() and path.is_file():
            return text
        what = "a directory" if path.is_dir() else "no such file"
        self.fail(
            f"{text!r} is neither a policy file ({what}) nor a preset ({', '.join(PRESET_NAMES)})",
            param,
            ctx,
        )


def policy_options(command: F) -> F:
    """``--preset NAME`` / ``--policy FILE|PRESET``; neither means TASKLEDGER_RETENTION_POLICY."""
    command = click.option(
        "--policy",
        "policy_file",
        type=PolicySource(),
        default=None,
        help="A TOML policy file, or a preset's name.",
    )(command)
    return click.option(
        "--preset", type=click.Choice(PRESET_NAMES), default=None, help="A built-in policy."
    )(command)


def choose_policy(obj: CliContext, preset: str | None, policy_file: str | None) -> Policy:
    from taskledger.retention.policy.load import load_policy

    if preset and policy_file:
        raise click.UsageError("give --preset or --policy, not both")
    return load_policy(preset or policy_file or obj.settings.retention.policy)


@click.group()
def retention() -> None:
    """Preview and run retention; read its audit log."""


def render_preview(obj: CliContext, result: PlanPreview) -> None:
    from rich.table import Table

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
    for rule in result.rules:
        if rule.partitions:
            paths = Table(
                "partition",
                "from",
                "to",
                "rows",
                "selected",
                "path",
                title=f"rule {rule.name}: partitions of runs",
            )
            for p in rule.partitions:
                paths.add_row(
                    p["partition"],
                    p["lower"] or "-",
                    p["upper"] or "-",
                    str(p["rows"]),
                    str(p["selected"]),
                    "drop whole" if p["path"] == "drop" else "batched",
                )
            obj.console.print(paths)


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "-"


@retention.command("preview")
@policy_options
@json_option
@pass_ctx
def preview_cmd(
    obj: CliContext, preset: str | None, policy_file: str | None, as_json: bool
) -> None:
    """Show what the policy would do, rule by rule. Changes nothing (but is audited)."""
    from taskledger.enums import RetentionTrigger
    from taskledger.retention.archive.stores import ArchiveTarget
    from taskledger.retention.execute.request import RetentionRequest
    from taskledger.retention.execute.runner import preview_policy

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


def confirm(question: str) -> None:
    """Ask ``question`` on the terminal; without a terminal, or on a no, the work is refused
    (exit code 3), as a safeguard's refusal is."""
    if not sys.stdin.isatty():
        raise SafeguardRefused("not confirmed (pass --yes to run without a prompt)")
    if not click.confirm(question):
        raise SafeguardRefused("not confirmed")


@retention.command("run")
@policy_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Allow rules that delete more than max_table_fraction of their table.",
)
@click.option("--reason", default=None, help="Why (required with --force; audited).")
@json_option
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
    from dataclasses import replace

    from taskledger.enums import RetentionTrigger
    from taskledger.retention.archive.stores import ArchiveTarget
    from taskledger.retention.execute.request import RetentionRequest, Safeguards
    from taskledger.retention.execute.runner import execute_policy, preview_policy
    from taskledger.store.partitions import ensure_partitions

    # PostgreSQL: a cron-driven deployment keeps the partitions ahead from here too.
    ensure_partitions(obj.engine, obj.settings.runs_partition)
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
        confirm(f"Apply plan {result.plan_id} to {result.total} rows?")
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
    from taskledger.schemas.retention import RetentionRunRead

    fields = RetentionRunRead.model_validate(row).model_dump()
    return {("policy" if key == "policy_name" else key): value for key, value in fields.items()}


@retention.command("runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@pass_ctx
def runs_cmd(obj: CliContext, limit: int, as_json: bool) -> None:
    """The audit log: previews, executions and restores, newest first."""
    from rich.table import Table

    from taskledger.retention.audit import list_audit
    from taskledger.store.engine import read_only

    with read_only(obj.sessions())() as session:
        rows, _ = list_audit(session=session, limit=limit, cursor=None)
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
