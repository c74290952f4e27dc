"""``taskledger projects``: create projects from the command line."""

from __future__ import annotations

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx
from taskledger.errors import NotFoundError


@click.group()
def projects() -> None:
    """Manage projects."""


@projects.command("create")
@click.argument("name")
@click.option("--owner", "owner_email", required=True, help="Email of the owning user.")
@json_option
@pass_ctx
def create(obj: CliContext, name: str, owner_email: str, as_json: bool) -> None:
    """Create project NAME owned by the user with email --owner."""
    from taskledger.services import projects as projects_service
    from taskledger.services import users as users_service

    name = name.strip()
    if not name or len(name) > 255:
        raise click.UsageError("NAME must be 1 to 255 characters.")
    with obj.sessions().begin() as session:
        owner = users_service.find_user(session=session, email=owner_email)
        if owner is None:
            raise NotFoundError(f"no user with email {owner_email!r}")
        project = projects_service.create_project(session=session, name=name, owner=owner)
        result = {"id": str(project.id), "name": project.name, "owner": owner.email}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"created project {result['name']} ({result['id']}) owned by {result['owner']}")
