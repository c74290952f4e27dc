"""``taskledger holds``: place, list and release retention holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx
from taskledger.enums import HoldScope, values

if TYPE_CHECKING:
    from taskledger.store.models import RetentionHold


def _dict(hold: RetentionHold) -> dict[str, object]:
    return {
        "id": hold.id,
        "scope": hold.scope,
        "target_id": hold.target_id,
        "reason": hold.reason,
        "created_by": hold.created_by,
        "created_at": hold.created_at.isoformat(),
        "released_at": hold.released_at.isoformat() if hold.released_at else None,
        "released_by": hold.released_by,
    }


@click.group()
def holds() -> None:
    """Protect records from every retention rule and delete path."""


@holds.command("add")
@click.option("--scope", type=click.Choice(values(HoldScope)), required=True)
@click.option("--id", "target_id", required=True, help="The record's id.")
@click.option("--reason", required=True, help="Why (audited).")
@json_option
@pass_ctx
def add(obj: CliContext, scope: str, target_id: str, reason: str, as_json: bool) -> None:
    """Hold a project, agent, task, run, session or room, and everything beneath it."""
    from taskledger.cli.retention import cli_actor
    from taskledger.retention.plan import holds as holds_service

    with obj.sessions().begin() as session:
        hold = holds_service.add_hold(
            session=session,
            scope=HoldScope(scope),
            target_id=target_id,
            reason=reason,
            actor=cli_actor(),
        )
        result = _dict(hold)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"hold {result['id']} on {scope} {result['target_id']}")


@holds.command("list")
@click.option("--active", is_flag=True, help="Only holds not yet released.")
@json_option
@pass_ctx
def list_(obj: CliContext, active: bool, as_json: bool) -> None:
    """List holds, newest first."""
    from rich.table import Table

    from taskledger.retention.plan import holds as holds_service
    from taskledger.store.engine import read_only

    rows: list[dict[str, object]] = []
    with read_only(obj.sessions())() as session:
        cursor: str | None = None
        while True:
            page, cursor = holds_service.list_holds(
                session=session, active_only=active, limit=1000, cursor=cursor
            )
            rows.extend(_dict(h) for h in page)
            if cursor is None:
                break
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "scope", "target", "reason", "by", "since", "released")
    for h in rows:
        table.add_row(
            str(h["id"]),
            str(h["scope"]),
            str(h["target_id"]),
            str(h["reason"]),
            str(h["created_by"]),
            str(h["created_at"]),
            str(h["released_at"] or "-"),
        )
    obj.console.print(table)


@holds.command("release")
@click.argument("hold_id", type=int)
@json_option
@pass_ctx
def release(obj: CliContext, hold_id: int, as_json: bool) -> None:
    """Release hold HOLD_ID."""
    from taskledger.cli.retention import cli_actor
    from taskledger.retention.plan import holds as holds_service

    with obj.sessions().begin() as session:
        hold = holds_service.release_hold(session=session, hold_id=hold_id, actor=cli_actor())
        result = _dict(hold)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"released hold {hold_id}")
