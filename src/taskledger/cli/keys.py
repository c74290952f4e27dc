"""``taskledger keys``: issue, list and revoke project API keys from the command line."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx
from taskledger.enums import Scope, values
from taskledger.errors import NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taskledger.store.models import ApiKey, Project


@click.group()
def keys() -> None:
    """Manage project API keys."""


def _project(session: Session, name_or_id: str) -> Project:
    from taskledger.services import projects as projects_service

    project = projects_service.find_project(session=session, name_or_id=name_or_id)
    if project is None:
        raise NotFoundError(f"no project named {name_or_id!r}")
    return project


def _key_dict(key: ApiKey) -> dict[str, object]:
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "agent_id": str(key.agent_id) if key.agent_id else None,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@keys.command("create")
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@click.option("--name", required=True, help="A label for the key.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(values(Scope)),
    help="read, write or admin; repeatable.",
)
@click.option("--agent", "agent_id", type=click.UUID, default=None, help="Bind to an agent.")
@json_option
@pass_ctx
def create(
    obj: CliContext,
    project_ref: str,
    name: str,
    scopes: tuple[str, ...],
    agent_id: uuid.UUID | None,
    as_json: bool,
) -> None:
    """Issue a key. Its secret is printed this once and never again."""
    from taskledger.services import api_keys

    with obj.sessions().begin() as session:
        project = _project(session, project_ref)
        key, secret = api_keys.create_key(
            session=session,
            project=project,
            name=name,
            scopes=[Scope(s) for s in scopes],
            agent_id=agent_id,
            created_by=None,
        )
        result = {**_key_dict(key), "project": project.name, "key": secret}
    if as_json:
        emit_json(result)
        return
    click.echo(f"created key {result['name']} ({result['id']}) in {result['project']}")
    click.echo(f"key: {secret}")
    click.echo("Store it now: it cannot be shown again.")


@keys.command("list")
@click.option("--project", "project_ref", required=True, help="Project name or id.")
@json_option
@pass_ctx
def list_(obj: CliContext, project_ref: str, as_json: bool) -> None:
    """List a project's keys (never their secrets)."""
    from rich.table import Table

    from taskledger.services import api_keys

    rows: list[dict[str, object]] = []
    with obj.sessions().begin() as session:
        project = _project(session, project_ref)
        cursor: str | None = None
        while True:
            page, cursor = api_keys.list_keys(
                session=session, project_id=project.id, limit=1000, cursor=cursor
            )
            rows.extend(_key_dict(k) for k in page)
            if cursor is None:
                break
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "name", "prefix", "scopes", "last used", "revoked")
    for row in rows:
        scopes = row["scopes"]
        assert isinstance(scopes, list)
        table.add_row(
            str(row["id"]),
            str(row["name"]),
            str(row["prefix"]),
            ",".join(scopes),
            str(row["last_used_at"] or "-"),
            str(row["revoked_at"] or "-"),
        )
    obj.console.print(table)


@keys.command("revoke")
@click.argument("key_id", type=click.UUID)
@json_option
@pass_ctx
def revoke(obj: CliContext, key_id: uuid.UUID, as_json: bool) -> None:
    """Revoke key KEY_ID; it stops authenticating at once."""
    from taskledger.services import api_keys
    from taskledger.store.models import ApiKey

    with obj.sessions().begin() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFoundError(f"no API key {key_id}")
        key = api_keys.revoke_key(session=session, project_id=key.project_id, key_id=key.id)
        result = _key_dict(key)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"revoked key {key_id}")
