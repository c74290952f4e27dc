"""``taskledger db``: upgrade the schema, show its revision, and check it against the models."""

from __future__ import annotations

import sys

import click

from taskledger.cli.base import EXIT_ERROR, CliContext, emit_json, json_option, pass_ctx


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@json_option
@pass_ctx
def upgrade(obj: CliContext, revision: str, as_json: bool) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from taskledger.store import migrate

    migrate.upgrade(obj.engine, revision)
    current = migrate.current_revision(obj.engine)
    if as_json:
        emit_json({"current": current, "head": migrate.head_revision()})
    else:
        click.echo(f"database at revision {current}")


@db.command()
@json_option
@pass_ctx
def current(obj: CliContext, as_json: bool) -> None:
    """Show the database's revision and the newest one available."""
    from taskledger.store import migrate

    revision, head = migrate.current_revision(obj.engine), migrate.head_revision()
    if as_json:
        emit_json({"current": revision, "head": head, "at_head": revision == head})
        return
    click.echo(f"current: {revision or '(empty database)'}")
    click.echo(f"head:    {head}")


@db.command()
@json_option
@pass_ctx
def check(obj: CliContext, as_json: bool) -> None:
    """Exit 0 when the database is at head and matches the models, 1 otherwise."""
    from taskledger.store import migrate

    revision, head = migrate.current_revision(obj.engine), migrate.head_revision()
    problems: list[str] = []
    if revision != head:
        problems.append(f"database is at {revision or '(empty)'}, head is {head}")
    else:
        problems.extend(f"schema drift: {item}" for item in migrate.drift(obj.engine))
    if as_json:
        result: dict[str, object] = {
            "current": revision,
            "head": head,
            "ok": not problems,
            "problems": problems,
        }
        if problems:  # one JSON document: what was found, and that the check failed
            message = "; ".join(problems)
            result["error"] = {"kind": "invalid", "message": message, "exit_code": EXIT_ERROR}
        emit_json(result)
    elif not problems:
        click.echo(f"ok: at head {head}, no drift")
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_ERROR)
