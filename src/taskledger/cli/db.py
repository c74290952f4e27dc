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
    if current == migrate.head_revision():
        from taskledger.store.partitions import ensure_partitions

        ensure_partitions(obj.engine, obj.settings.runs_partition)
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


@db.command()
@click.option(
    "--ensure",
    is_flag=True,
    help="First create the missing partitions: this period's, the next ones', and any the "
    "default partition holds rows of (they move into them).",
)
@click.option(
    "--ahead",
    type=click.IntRange(0, 1000),
    default=None,
    help="With --ensure: how many periods ahead to create (default 3).",
)
@json_option
@pass_ctx
def partitions(obj: CliContext, ensure: bool, ahead: int | None, as_json: bool) -> None:
    """PostgreSQL: list the partitions of runs (range, estimated rows), the default one last."""
    from sqlalchemy import text

    from taskledger.store.partitions import AHEAD, ensure_partitions, is_partitioned
    from taskledger.store.partitions import list_partitions as listed

    created: list[str] = []
    if ensure:
        period = obj.settings.runs_partition
        created = ensure_partitions(obj.engine, period, ahead=AHEAD if ahead is None else ahead)
    with obj.engine.connect() as conn:
        if not is_partitioned(conn):
            raise click.UsageError(
                "runs is not partitioned here: it is on PostgreSQL at head (taskledger db upgrade)"
            )
        found = listed(conn)
        estimates: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT relname, greatest(reltuples, 0)::bigint FROM pg_class "
                    "WHERE relname = ANY(:n)"
                ),
                {"n": [p.name for p in found]},
            ).all()
        )
    items = [
        {
            "name": p.name,
            "lower": p.lower.isoformat() if p.lower else None,
            "upper": p.upper.isoformat() if p.upper else None,
            "estimated_rows": int(estimates.get(p.name, 0)),
        }
        for p in found
    ]
    if as_json:
        emit_json({"partitions": items, "created": created})
        return
    for name in created:
        click.echo(f"created {name}")
    for item in items:
        span = f"{item['lower']} .. {item['upper']}" if item["lower"] else "(default)"
        click.echo(f"{item['name']:<16} {span:<54} ~{item['estimated_rows']:,} rows")
