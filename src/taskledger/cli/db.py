"""``taskledger db``: upgrade the schema, show its revision, and check it against the models."""

from __future__ import annotations

import sys

import click

from taskledger.cli.base import EXIT_ERROR, CliContext, emit_json, pass_ctx
from taskledger.store import migrate


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def upgrade(obj: CliContext, revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    migrate.upgrade(obj.engine, revision)
    click.echo(f"database at revision {migrate.current_revision(obj.engine)}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def current(obj: CliContext, as_json: bool) -> None:
    """Show the database's revision and the newest one available."""
    revision, head = migrate.current_revision(obj.engine), migrate.head_revision()
    if as_json:
        emit_json({"current": revision, "head": head, "at_head": revision == head})
        return
    click.echo(f"current: {revision or '(empty database)'}")
    click.echo(f"head:    {head}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def check(obj: CliContext, as_json: bool) -> None:
    """Exit 0 when the database is at head and matches the models, 1 otherwise."""
    revision, head = migrate.current_revision(obj.engine), migrate.head_revision()
    problems: list[str] = []
    if revision != head:
        problems.append(f"database is at {revision or '(empty)'}, head is {head}")
    else:
        problems.extend(f"schema drift: {item}" for item in migrate.drift(obj.engine))
    if as_json:
        emit_json({"current": revision, "head": head, "ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            click.echo(problem, err=True)
    else:
        click.echo(f"ok: at head {head}, no drift")
    if problems:
        sys.exit(EXIT_ERROR)
