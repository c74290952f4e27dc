"""``taskledger users``: create user accounts from the command line."""

from __future__ import annotations

import sys

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx


@click.group()
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.option("--email", required=True, help="Login email (unique, case-insensitive).")
@click.option("--superuser", is_flag=True, help="Make the user a superuser.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of generating one.",
)
@json_option
@pass_ctx
def create(
    obj: CliContext, email: str, superuser: bool, password_stdin: bool, as_json: bool
) -> None:
    """Create a user. Without --password-stdin a random password is generated and printed once."""
    import secrets

    from taskledger.schemas.users import UserCreate
    from taskledger.services import users as users_service

    generated = not password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\r\n")
    try:
        body = UserCreate(email=email, password=password, is_superuser=superuser)
    except ValueError as exc:
        raise click.UsageError(_first_error(exc)) from exc
    with obj.sessions().begin() as session:
        user = users_service.create_user(
            session=session,
            email=body.email,
            password=body.password,
            is_superuser=body.is_superuser,
        )
        result = {"id": str(user.id), "email": user.email, "is_superuser": user.is_superuser}
    if generated:
        result["password"] = password
    if as_json:
        emit_json(result)
        return
    kind = "superuser" if superuser else "user"
    click.echo(f"created {kind} {result['email']} ({result['id']})")
    if generated:
        click.echo(f"password: {password}")


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        return f"{field}: {first.get('msg')}"
    return str(exc)
