"""The data model on both backends: UTC timestamps, constraints and the cascades (SPEC 2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    ApiKey,
    Instruction,
    Project,
    Run,
    Task,
    TaskDependency,
    User,
)


def make_project(session: Session, name: str = "alpha") -> Project:
    owner = User(email=f"{name}-{uuid.uuid4().hex[:6]}@example.com", password_hash="x")
    project = Project(name=name, owner=owner)
    session.add(project)
    session.flush()
    return project


def test_timestamps_read_back_aware_utc(engine: Engine) -> None:
    started = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine, expire_on_commit=False) as session, session.begin():
        project = make_project(session)
        session.add(
            Run(project_id=project.id, task="t", run_id="r1", status="queued", started_at=started)
        )
    with Session(engine, expire_on_commit=False) as session:
        run = session.scalars(select(Run)).one()
        assert run.started_at.tzinfo is not None
        assert run.started_at.utcoffset() == timedelta(0)
        assert run.started_at == started  # the same instant
        assert run.started_at.hour == 10  # normalised to UTC
        assert run.created_at.tzinfo is not None
        # Aggregates come back through the type as well.
        newest = session.scalar(select(func.max(Run.started_at)))
        assert newest == started


def test_naive_datetimes_are_taken_as_utc(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        project = make_project(session)
        session.add(
            Run(
                project_id=project.id,
                task="t",
                run_id="r",
                status="queued",
                started_at=datetime(2025, 1, 1, 8, 0),
            )
        )
    with Session(engine, expire_on_commit=False) as session:
        assert session.scalars(select(Run.started_at)).one() == datetime(2025, 1, 1, 8, tzinfo=UTC)


def test_agent_name_unique_per_project(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        a, b = make_project(session, "a"), make_project(session, "b")
        session.add_all(
            [Agent(project_id=a.id, name="worker"), Agent(project_id=b.id, name="worker")]
        )
    with (
        pytest.raises(IntegrityError),
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.add(Agent(project_id=a.id, name="worker"))


def test_idempotency_key_unique_per_project(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        a, b = make_project(session, "a"), make_project(session, "b")
        for project in (a, b):
            session.add(
                Run(
                    project_id=project.id,
                    task="t",
                    run_id="1",
                    status="queued",
                    idempotency_key="k",
                )
            )
        # NULL keys never collide.
        session.add_all(
            [Run(project_id=a.id, task="t", run_id=str(i), status="queued") for i in range(3)]
        )
    with (
        pytest.raises(IntegrityError),
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.add(
            Run(project_id=a.id, task="t", run_id="2", status="queued", idempotency_key="k")
        )


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Run, {"task": "t", "run_id": "r", "status": "exploded"}),
        (Task, {"title": "t", "status": "done"}),
        (Agent, {"name": "a", "status": "asleep"}),
    ],
)
def test_status_outside_the_set_is_refused(
    engine: Engine, model: type, fields: dict[str, str]
) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        project_id = make_project(session).id
    with (
        pytest.raises(IntegrityError),
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.add(model(project_id=project_id, **fields))


def test_task_cannot_depend_on_itself(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        task = Task(project_id=make_project(session).id, title="t")
        session.add(task)
        session.flush()
        task_id = task.id
    with (
        pytest.raises(IntegrityError),
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.add(TaskDependency(task_id=task_id, depends_on_id=task_id))


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _populate(session: Session) -> dict[str, object]:
    project = make_project(session)
    agent = Agent(project_id=project.id, name="worker")
    session.add(agent)
    session.flush()
    task = Task(project_id=project.id, title="t", assigned_to=agent.id, assigned_to_type="agent")
    agent_session = AgentSession(project_id=project.id, agent_id=agent.id)
    session.add_all([task, agent_session])
    session.flush()
    instruction = Instruction(
        project_id=project.id, agent_id=agent.id, payload={"do": 1}, metadata_={"m": 1}
    )
    session.add_all(
        [
            ApiKey(
                project_id=project.id,
                agent_id=agent.id,
                name="k",
                prefix=uuid.uuid4().hex[:12],
                key_hash="h",
                scopes=["read"],
            ),
            Run(
                project_id=project.id,
                agent_id=agent.id,
                task_id=task.id,
                task="t",
                run_id="r",
                status="completed",
            ),
            AgentConnection(project_id=project.id, agent_id=agent.id, session_id=agent_session.id),
            instruction,
        ]
    )
    session.flush()
    session.add(
        Acknowledgement(
            project_id=project.id,
            instruction_id=instruction.id,
            agent_id=agent.id,
            status="received",
        )
    )
    session.flush()
    return {"project": project.id, "agent": agent.id}


def test_deleting_an_agent_keeps_history(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        ids = _populate(session)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        # A Core DELETE: the database's own ON DELETE rules do the work, not the ORM.
        session.execute(delete(Agent).where(Agent.id == ids["agent"]))
    with Session(engine, expire_on_commit=False) as session:
        # Keys, sessions and connections go with the agent...
        assert _count(session, ApiKey) == 0
        assert _count(session, AgentSession) == 0
        assert _count(session, AgentConnection) == 0
        # ...while runs, tasks, instructions and acknowledgements stay, unattributed.
        run = session.scalars(select(Run)).one()
        assert run.agent_id is None and run.task_id is not None
        assert _count(session, Task) == 1
        assert session.scalars(select(Instruction)).one().agent_id is None
        assert session.scalars(select(Acknowledgement)).one().agent_id is None


def test_deleting_a_project_deletes_everything_it_owns(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        ids = _populate(session)
        other = make_project(session, "other")
        session.add(Run(project_id=other.id, task="t", run_id="keep", status="queued"))
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.delete(session.get(Project, ids["project"]))
    with Session(engine, expire_on_commit=False) as session:
        for model in (
            Agent,
            Task,
            Run,
            AgentSession,
            AgentConnection,
            Instruction,
            Acknowledgement,
            ApiKey,
        ):
            remaining = _count(session, model)
            expected = 1 if model is Run else 0
            assert remaining == expected, model.__name__
        assert session.scalars(select(Run.run_id)).one() == "keep"


def test_instruction_metadata_column_is_named_metadata(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        project = make_project(session)
        session.add(Instruction(project_id=project.id, metadata_={"source": "planner"}))
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT metadata FROM instructions")).scalar_one()
    assert "planner" in str(raw)
