"""``taskledger generate``: fill a project with realistic demo data for every table."""

from __future__ import annotations

import sys
import time
import uuid
from typing import TYPE_CHECKING

import click

from taskledger.cli.base import CliContext, emit_json, json_option, pass_ctx, progress_bar
from taskledger.errors import NotFoundError, TaskledgerError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taskledger.store.models import User


@click.command()
@click.option(
    "--runs",
    "run_count",
    type=click.IntRange(0, 100_000_000),
    required=True,
    help="How many runs to create.",
)
@click.option(
    "--days",
    type=click.FloatRange(0.01, 36_500),
    default=90,
    show_default=True,
    help="Spread the data over this many days, ending now.",
)
@click.option(
    "--project",
    "project_name",
    default="demo",
    show_default=True,
    help="Project to fill (created if missing).",
)
@click.option(
    "--owner",
    "owner_email",
    default=None,
    help="Owner of a new project (default: the first superuser).",
)
@click.option(
    "--agents",
    type=click.IntRange(1, 10_000),
    default=5,
    show_default=True,
    help="How many agents (sessions, connections, instructions scale with it).",
)
@click.option("--seed", type=int, default=None, help="Seed for repeatable data.")
@json_option
@pass_ctx
def generate(
    obj: CliContext,
    run_count: int,
    days: float,
    project_name: str,
    owner_email: str | None,
    agents: int,
    seed: int | None,
    as_json: bool,
) -> None:
    """Generate demo data: agents, tasks with dependencies, sessions, connections,
    instructions, acknowledgements and RUNS runs over the last DAYS days."""
    from taskledger.services.generate import generate as generate_data

    project_id = _project_id(obj, project_name, owner_email)
    started = time.perf_counter()
    show = sys.stderr.isatty() and not as_json
    with progress_bar(show) as bar:
        task = bar.add_task("runs", total=run_count)
        report = generate_data(
            obj.engine,
            project_id,
            runs=run_count,
            days=days,
            agents=agents,
            seed=seed,
            progress=lambda n: bar.advance(task, n),
        )
    elapsed = time.perf_counter() - started
    if as_json:
        emit_json(
            {
                "project": project_name,
                "project_id": str(project_id),
                "counts": report.counts,
                "seconds": round(elapsed, 2),
            }
        )
        return
    summary = ", ".join(f"{n} {table}" for table, n in report.counts.items())
    click.echo(f"generated in {elapsed:.1f}s into project {project_name}: {summary}")


def _project_id(obj: CliContext, name: str, owner_email: str | None) -> uuid.UUID:
    """The project to fill: found, or created for ``owner_email`` or the first superuser.

    On a database with no users at all, the initial superuser is created first, in a
    transaction of its own (as the server's first start does), and owns the project.
    """
    from taskledger.services import projects as projects_service
    from taskledger.services import users as users_service
    from taskledger.services.bootstrap import ensure_initial_admin

    sessions = obj.sessions()
    with sessions.begin() as session:
        project = projects_service.find_project(session=session, name_or_id=name)
        if project is not None:
            return project.id
        if owner_email:
            owner = users_service.find_user(session=session, email=owner_email)
            if owner is None:
                raise NotFoundError(f"no user with email {owner_email!r}")
        else:
            owner = _first_superuser(session)
        if owner is not None:
            return projects_service.create_project(session=session, name=name, owner=owner).id
    admin = ensure_initial_admin(sessions, obj.settings)
    if admin is not None:
        click.echo(f"created superuser {admin.email}; password in {admin.password_file}", err=True)
    with sessions.begin() as session:
        owner = _first_superuser(session)
        if owner is None:
            raise TaskledgerError(
                "no superuser to own the new project: pass --owner EMAIL of an existing user"
            )
        project = projects_service.find_project(session=session, name_or_id=name)
        if project is None:
            project = projects_service.create_project(session=session, name=name, owner=owner)
        return project.id


def _first_superuser(session: Session) -> User | None:
    from sqlalchemy import select

    from taskledger.store.models import User

    return session.scalar(
        select(User).where(User.is_superuser.is_(True)).order_by(User.created_at).limit(1)
    )
