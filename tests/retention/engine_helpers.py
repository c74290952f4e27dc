"""Shared set-up for retention engine tests: a populated project and a way to run a policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.executor import Progress
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import ExecutionReport, execute_policy, preview_policy
from taskledger.retention.plan.preview import PlanPreview
from taskledger.retention.policy.rules import Policy
from taskledger.services.generate import generate
from taskledger.store import make_session_factory
from taskledger.store.models import Project, Run, User


def populated(
    engine: Engine, *, runs: int = 3000, days: float = 400, seed: int = 1, agents: int = 3
) -> uuid.UUID:
    """A project full of generated data spread over ``days``; returns its id."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        owner = session.scalar(select(User).limit(1)) or User(
            email=f"owner-{uuid.uuid4().hex[:6]}@example.com", password_hash="x"
        )
        project = Project(name=f"p-{uuid.uuid4().hex[:8]}", owner=owner)
        session.add(project)
    generate(engine, project.id, runs=runs, days=days, agents=agents, seed=seed)
    return project.id


def run_policy(
    engine: Engine,
    policy: Policy,
    archive_root: Path,
    now: datetime | None = None,
    *,
    force: bool = True,
    gzip_level: int = 6,
    progress: Progress | None = None,
) -> tuple[PlanPreview, ExecutionReport]:
    """Preview and execute ``policy``; forced by default, as test data is mostly old."""
    sessions = make_session_factory(engine)
    request = RetentionRequest(
        actor="test",
        trigger=RetentionTrigger.CLI,
        reason="test data is old" if force else None,
        policy=policy,
        archive=ArchiveTarget(str(archive_root), gzip_level=gzip_level),
        safeguards=Safeguards(force=force),
        progress=progress,
    )
    previewed = preview_policy(sessions, request, now=now)
    report = execute_policy(engine, sessions, request.confirming(previewed))
    return previewed, report


def count(engine: Engine, model: type, *where: object) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def sessions_of(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def old_and_new_runs(engine: Engine, old: int, new: int) -> tuple[uuid.UUID, datetime]:
    """A project with ``old`` runs started 200 days ago and ``new`` started yesterday; returns
    the project and a cutoff between the two."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        owner = session.scalar(select(User).limit(1)) or User(
            email=f"owner-{uuid.uuid4().hex[:6]}@example.com", password_hash="x"
        )
        project = Project(name=f"p-{uuid.uuid4().hex[:8]}", owner=owner)
        session.add(project)
        session.flush()
        project_id = project.id
        for number, started in ((old, now - timedelta(days=200)), (new, now - timedelta(days=1))):
            session.add_all(
                Run(
                    project_id=project_id,
                    task="nightly",
                    run_id=uuid.uuid4().hex,
                    status="completed",
                    started_at=started,
                    inputs={"n": i},
                )
                for i in range(number)
            )
    return project_id, (now - timedelta(days=100)).replace(microsecond=0)
