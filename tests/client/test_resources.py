"""Every resource method of ``Ledger`` and ``AsyncLedger`` against a real server, with the type
of each answer checked, and each kind of error raised as its exception.

One scenario runs for both clients: ``done`` awaits what the async client returns and passes
the sync client's values through, so the two cannot drift apart."""

from __future__ import annotations

import inspect
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from taskledger.client import (
    AsyncLedger,
    BadRequest,
    Conflict,
    Forbidden,
    Ledger,
    LedgerConnectionError,
    NotFound,
    Unauthorized,
    ValidationError,
)
from taskledger.schemas.agents import AgentCreate, AgentPage, AgentRead
from taskledger.schemas.api_keys import ApiKeyCreated, ApiKeyPage, ApiKeyRead
from taskledger.schemas.auth import Me
from taskledger.schemas.connections import ConnectionPage, ConnectionRead
from taskledger.schemas.instructions import (
    AcknowledgementPage,
    AcknowledgementRead,
    InstructionPage,
    InstructionRead,
)
from taskledger.schemas.projects import ProjectPage, ProjectRead
from taskledger.schemas.retention import (
    ArchivePage,
    ArchiveRead,
    ExecutionOut,
    HoldPage,
    HoldRead,
    PreviewOut,
    RestoreOut,
    RetentionRunPage,
)
from taskledger.schemas.rooms import ParticipantPage, ParticipantRead, RoomPage, RoomRead
from taskledger.schemas.runs import BatchResult, RunCreate, RunPage, RunRead
from taskledger.schemas.sessions import SessionPage, SessionRead
from taskledger.schemas.tasks import TaskPage, TaskRead
from taskledger.schemas.users import UserPage, UserRead
from taskledger.services import users
from taskledger.store import make_session_factory
from tests.client.conftest import Live
from tests.client.routes import CLIENT_METHODS, requested_routes
from tests.helpers import PASSWORD
from tests.serving import free_port

Client = Ledger | AsyncLedger


async def done(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def every(iterator: Any) -> list[Any]:
    if hasattr(iterator, "__aiter__"):
        return [item async for item in iterator]
    return list(iterator)


async def close(client: Client) -> None:
    if isinstance(client, AsyncLedger):
        await client.aclose()
    else:
        client.close()


def make(kind: str, url: str, key: str | None = None, **options: Any) -> Client:
    cls = AsyncLedger if kind == "async" else Ledger
    return cls(url, key, **options)


async def login(kind: str, url: str, email: str, password: str, **options: Any) -> Client:
    cls = AsyncLedger if kind == "async" else Ledger
    return await done(cls.login(url, email, password, **options))


def superuser(live: Live) -> str:
    email = f"root-{uuid.uuid4().hex[:8]}@example.com"
    with make_session_factory(live.engine).begin() as session:
        users.create_user(session=session, email=email, password=PASSWORD, is_superuser=True)
    return email


async def scenario(kind: str, live: Live, tmp_path: Any) -> None:
    owner = make(kind, live.url, live.token, project_id=live.project_id)
    ledger = make(kind, live.url, live.key)
    admin = make(kind, live.url, admin_key=live.admin_key)
    root = await login(kind, live.url, superuser(live), PASSWORD)
    try:
        me = await done(ledger.me())
        assert isinstance(me, Me) and me.kind == "api_key"

        # users, as a superuser who logged in with email and password
        assert root.token is not None and root.token.expires_in > 0
        assert (await done(root.me())).kind == "user"
        user = await done(
            root.users.create(email=f"{kind}-{uuid.uuid4().hex[:6]}@x.org", password=PASSWORD)
        )
        assert isinstance(user, UserRead) and user.is_active and not user.is_superuser
        assert isinstance(await done(root.users.list(limit=1)), UserPage)
        assert user.id in {u.id for u in await every(root.users.iter(page_size=1))}
        assert (await done(root.users.get(user.id))).email == user.email
        member = await login(kind, live.url, user.email, PASSWORD)
        assert (await done(member.me())).user.id == user.id  # type: ignore[union-attr]
        await close(member)
        deactivated = await done(root.users.update(user.id, is_active=False))
        assert isinstance(deactivated, UserRead) and not deactivated.is_active
        with pytest.raises(Unauthorized):
            await login(kind, live.url, user.email, PASSWORD)
        with pytest.raises(Forbidden):  # a project's owner is no superuser
            await done(owner.users.list())

        # projects, as the user who owns them
        project = await done(owner.projects.create(name=f"second-{kind}"))
        assert isinstance(project, ProjectRead)
        assert isinstance(await done(owner.projects.list(limit=1)), ProjectPage)
        assert {p.id for p in await every(owner.projects.iter(page_size=1))} >= {project.id}
        assert (await done(owner.projects.get(project.id))).name == f"second-{kind}"
        renamed = await done(owner.projects.update(project.id, name=f"renamed-{kind}"))
        assert isinstance(renamed, ProjectRead) and renamed.name == f"renamed-{kind}"

        # API keys
        created = await done(owner.api_keys.create(project.id, name="ci", scopes=["read"]))
        assert isinstance(created, ApiKeyCreated) and created.key.startswith("tl_")
        assert isinstance(await done(owner.api_keys.list(project.id)), ApiKeyPage)
        listed = await every(owner.api_keys.iter(project.id, page_size=1))
        assert all(isinstance(k, ApiKeyRead) for k in listed) and len(listed) == 1
        assert await done(owner.api_keys.revoke(project.id, created.id)) is None
        revoked = make(kind, live.url, created.key)
        with pytest.raises(Unauthorized):
            await done(revoked.me())
        await close(revoked)
        assert await done(owner.projects.delete(project.id)) is None
        with pytest.raises(NotFound):
            await done(owner.projects.get(project.id))

        # agents
        agent = await done(ledger.agents.create(AgentCreate(name=f"planner-{kind}")))
        assert isinstance(agent, AgentRead)
        spare = await done(ledger.agents.create({"name": f"spare-{kind}"}, agent_type="llm"))
        assert isinstance(await done(ledger.agents.list(agent_type="llm")), AgentPage)
        assert [a.id for a in await every(ledger.agents.iter(agent_type="llm"))] == [spare.id]
        assert (await done(ledger.agents.get(agent.id))).id == agent.id
        updated = await done(ledger.agents.update(agent.id, nickname="P", capabilities=["x"]))
        assert updated.nickname == "P" and updated.capabilities == ["x"]
        cleared = await done(ledger.agents.update(agent.id, nickname=None))
        assert cleared.nickname is None and cleared.capabilities == ["x"]
        assert await done(ledger.agents.delete(spare.id)) is None
        with pytest.raises(Conflict):  # the name is taken
            await done(ledger.agents.create(name=f"planner-{kind}"))

        # rooms: participants and tasks
        room = await done(ledger.rooms.create(name=f"planning-{kind}", topic="weekly"))
        assert isinstance(room, RoomRead) and room.topic == "weekly"
        spare_room = await done(owner.rooms.create({"name": f"spare-{kind}"}))
        assert spare_room.project_id == live.project_id and spare_room.created_by is not None
        assert isinstance(await done(ledger.rooms.list(name=room.name)), RoomPage)
        assert [r.id for r in await every(ledger.rooms.iter(page_size=1))] == [
            room.id,
            spare_room.id,
        ]
        assert (await done(ledger.rooms.get(room.id))).name == room.name
        joined = await done(ledger.rooms.join(room.id, "agent", agent.id, role="owner"))
        assert isinstance(joined, ParticipantRead) and joined.role == "owner"
        with pytest.raises(Conflict):  # already in the room
            await done(ledger.rooms.join(room.id, "agent", agent.id))
        left = await done(ledger.rooms.leave(room.id, agent.id))
        assert left.left_at is not None
        again_in = await done(ledger.rooms.join(room.id, "agent", agent.id))
        participants = await done(ledger.rooms.participants(room.id, active=True))
        assert isinstance(participants, ParticipantPage)
        assert [p.id for p in participants.items] == [again_in.id]
        every_one = await every(ledger.rooms.iter_participants(room.id, page_size=1))
        assert [p.id for p in every_one] == [joined.id, again_in.id]
        in_room = [await done(ledger.tasks.create(title=f"r{i}", room_id=room.id)) for i in (1, 2)]
        room_tasks = await done(ledger.rooms.tasks(room.id, limit=1))
        assert isinstance(room_tasks, TaskPage) and room_tasks.next_cursor
        assert [t.id for t in await every(ledger.rooms.iter_tasks(room.id, page_size=1))] == [
            t.id for t in in_room
        ]
        for task in in_room:
            await done(ledger.tasks.delete(task.id))
        archived = await done(ledger.rooms.update(room.id, archived=True, topic=None))
        assert archived.archived_at is not None and archived.topic is None
        with pytest.raises(Conflict):  # an archived room takes no one new
            await done(ledger.rooms.join(room.id, "user", user.id))
        assert [r.id for r in (await done(ledger.rooms.list(archived=True))).items] == [room.id]
        assert await done(ledger.rooms.delete(spare_room.id)) is None
        with pytest.raises(NotFound):
            await done(ledger.rooms.get(spare_room.id))

        # tasks, with a dependency that blocks
        first = await done(ledger.tasks.create(title="first"))
        second = await done(ledger.tasks.create(title="second", dependencies=[first.id]))
        assert isinstance(second, TaskRead) and second.blocked_by == [first.id]
        assert isinstance(await done(ledger.tasks.list(status=["pending"])), TaskPage)
        assert len(await every(ledger.tasks.iter(page_size=1))) == 2
        assert (await done(ledger.tasks.get(first.id))).title == "first"
        assert (await done(ledger.tasks.update(first.id, priority="high"))).priority == "high"
        assigned = await done(ledger.tasks.assign(first.id, "agent", agent.id))
        assert assigned.assigned_to == agent.id
        with pytest.raises(Conflict) as blocked:
            await done(ledger.tasks.set_status(second.id, "in_progress"))
        assert [b["id"] for b in blocked.value.blockers] == [str(first.id)]
        started = await done(ledger.tasks.set_status(first.id, "in_progress"))
        assert started.status == "in_progress" and started.started_at is not None
        with pytest.raises(Conflict) as depended:
            await done(ledger.tasks.delete(first.id))
        assert depended.value.blockers
        assert await done(ledger.tasks.delete(second.id)) is None

        # runs
        run = await done(ledger.runs.create(task="embed", agent_id=agent.id, inputs={"n": 1}))
        assert isinstance(run, RunRead) and run.idempotency_key
        again = await done(ledger.runs.create(task="embed", idempotency_key=run.idempotency_key))
        assert again.id == run.id
        changed = await done(ledger.runs.update(run.id, status="completed", outputs_uri="s3://x"))
        assert changed.status == "completed" and changed.outputs_uri == "s3://x"
        assert (await done(ledger.runs.get(run.id))).outputs_uri == "s3://x"
        result = await done(
            ledger.runs.batch(
                [RunCreate(task="ingest", status="failed"), {"task": "ingest", "status": "failed"}]
            )
        )
        assert isinstance(result, BatchResult) and result.created == 2
        page = await done(ledger.runs.list(status=["failed"], task="ingest", limit=1))
        assert isinstance(page, RunPage) and len(page.items) == 1 and page.next_cursor
        with pytest.raises(BadRequest):  # a cursor of other filters
            await done(ledger.runs.list(status=["completed"], cursor=page.next_cursor))
        failed = await every(ledger.runs.iter(status=["failed"], page_size=1))
        assert [r.id for r in failed] == [i.id for i in reversed(result.items)]
        target = tmp_path / f"runs-{kind}.ndjson"
        written = await done(ledger.runs.export(target, status=["failed"]))
        assert written == target.stat().st_size > 0
        exported = [json.loads(line) for line in target.read_text().splitlines()]
        assert sorted(r["id"] for r in exported) == sorted(i.id for i in result.items)
        buffer = io.BytesIO()
        await done(ledger.runs.export(buffer, format="csv", task=["embed"]))
        assert buffer.getvalue().decode().splitlines()[0].startswith("id,")
        lines = await every(ledger.runs.lines(format="csv", status=["failed"]))
        assert len(lines) == 3  # the header and two runs
        assert await done(ledger.runs.delete(result.items[0].id)) is None
        with pytest.raises(NotFound):
            await done(ledger.runs.get(result.items[0].id))
        with pytest.raises(ValidationError) as invalid:
            await done(ledger.runs.batch([{"task": "ok"}, {"task": "x", "agent_id": first.id}]))
        assert "runs.1.agent_id" in invalid.value.fields()

        # sessions and connections
        session = await done(ledger.sessions.create(agent_id=agent.id))
        assert isinstance(session, SessionRead)
        assert isinstance(await done(ledger.sessions.list(agent_id=agent.id)), SessionPage)
        assert [s.id for s in await every(ledger.sessions.iter())] == [session.id]
        assert (await done(ledger.sessions.get(session.id))).status == "active"
        connection = await done(ledger.connections.open(agent_id=agent.id, session_id=session.id))
        assert isinstance(connection, ConnectionRead)
        assert isinstance(await done(ledger.connections.list(status="active")), ConnectionPage)
        assert len(await every(ledger.connections.iter(agent_id=agent.id))) == 1
        assert (await done(ledger.connections.get(connection.id))).status == "active"
        beat = await done(ledger.connections.heartbeat(connection.id))
        assert beat.last_heartbeat_at is not None
        closed = await done(ledger.connections.close(connection.id, "done"))
        assert closed.status == "closed" and closed.close_reason == "done"
        with pytest.raises(Conflict):
            await done(ledger.connections.heartbeat(connection.id))

        # instructions
        instruction = await done(ledger.instructions.create(agent_id=agent.id, payload={"do": 1}))
        assert isinstance(instruction, InstructionRead)
        assert isinstance(await done(ledger.instructions.list(status="pending")), InstructionPage)
        assert len(await every(ledger.instructions.iter())) == 1
        assert (await done(ledger.instructions.get(instruction.id))).payload == {"do": 1}
        sent = await done(ledger.instructions.update(instruction.id, status="sent"))
        assert sent.status == "sent"
        ack = await done(ledger.instructions.acknowledge(instruction.id, "accepted", message="ok"))
        assert isinstance(ack, AcknowledgementRead) and ack.message == "ok"
        acks = await done(ledger.instructions.acknowledgements(instruction.id))
        assert isinstance(acks, AcknowledgementPage) and [a.id for a in acks.items] == [ack.id]
        assert (await done(ledger.sessions.end(session.id, "completed"))).status == "completed"

        # admin: retention preview and execute, audit, holds, archives, restore, stats
        old = await done(
            ledger.runs.create(
                task="old",
                status="completed",
                started_at=datetime(2001, 1, 1, tzinfo=UTC),
                finished_at=datetime(2001, 1, 1, 0, 1, tzinfo=UTC),
            )
        )
        hold = await done(admin.admin.add_hold("run", old.id, "audit"))
        assert isinstance(hold, HoldRead)
        holds = await done(admin.admin.holds(active=True))
        assert isinstance(holds, HoldPage) and [h.id for h in holds.items] == [hold.id]
        assert (await done(admin.admin.release_hold(hold.id))).released_at is not None
        preview = await done(admin.admin.preview(preset="ops"))
        assert isinstance(preview, PreviewOut) and preview.plan_id
        execution = await done(admin.admin.execute(preview.plan_id, preset="ops"))
        assert isinstance(execution, ExecutionOut) and execution.archive_uri
        with pytest.raises(NotFound):
            await done(ledger.runs.get(old.id))
        audit = await done(admin.admin.retention_runs(mode="execute"))
        assert isinstance(audit, RetentionRunPage) and audit.items
        assert len(await every(admin.admin.iter_retention_runs(page_size=1))) >= 2
        archives = await done(admin.admin.archives())
        assert isinstance(archives, ArchivePage) and archives.items
        listed_archives = await every(admin.admin.iter_archives())
        assert all(isinstance(a, ArchiveRead) for a in listed_archives)
        restored = await done(admin.admin.restore(archives.items[0].uri))
        assert isinstance(restored, RestoreOut) and restored.inserted >= 1
        assert (await done(ledger.runs.get(old.id))).task == "old"
        stats = await done(admin.admin.stats())
        assert isinstance(stats, dict) and stats
        with pytest.raises(Forbidden):  # a project key is not an admin
            await done(ledger.admin.stats())
        reader = make(kind, live.url, live.read_key)
        with pytest.raises(Forbidden):
            await done(reader.runs.create(task="x"))
        await close(reader)
        nowhere = make(kind, f"http://127.0.0.1:{free_port()}", live.key, retries=1, backoff=0)
        with pytest.raises(LedgerConnectionError):
            await done(nowhere.runs.get(1))
        await close(nowhere)
    finally:
        for client in (owner, ledger, admin, root):
            await close(client)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_every_resource_method(kind: str, live: Live, tmp_path: Any) -> None:
    import asyncio

    before = len(live.server.output())
    asyncio.run(scenario(kind, live, tmp_path))
    assert live.server.faults() == []
    # Each route the client wraps was requested, so each wrapper was exercised.
    requested = requested_routes(live.server.output()[before:].splitlines())
    assert sorted(CLIENT_METHODS.keys() - requested) == []
