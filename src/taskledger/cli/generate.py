"""``taskledger generate``: fill a project with realistic demo data for every table."""

from __future__ import annotations

import sys
import time

import click
from sqlalchemy import select

from taskledger.cli.base import CliContext, emit_json, pass_ctx, progress_bar
from taskledger.errors import NotFoundError
from taskledger.services import projects as projects_service
from taskledger.services import users as users_service
from taskledger.services.bootstrap import ensure_initial_admin
from taskledger.services.generate import generate as generate_data
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
    sessions = obj.sessions()
    with sessions.begin() as session:
        project = projects_service.find_project(session=session, name_or_id=project_name)
        if project is None:
            if owner_email:
                owner = users_service.find_user(session=session, email=owner_email)
                if owner is None:
                    raise NotFoundError(f"no user with email {owner_email!r}")
            else:
                owner = session.scalar(
                    select(User).where(User.is_superuser.is_(True)).order_by(User.created_at)
                )
            if owner is None:
                session.rollback()
                admin = ensure_initial_admin(sessions, obj.settings)
                if admin is not None:
                    click.echo(
                        f"created superuser {admin.email}; password in {admin.password_file}",
                        err=True,
                    )
                owner = session.scalar(select(User).where(User.is_superuser.is_(True)))
                assert owner is not None
            project = projects_service.create_project(
                session=session, name=project_name, owner=owner
            )
        project_id = project.id
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
