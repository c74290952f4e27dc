"""Realistic demo data for every table: agents, rooms with participants, tasks with dependencies
(a share of them in rooms), sessions, connections, instructions, acknowledgements, and runs
spread over a span of days.

Used by ``taskledger generate``, the benchmarks and the tests. Rows go in through Core bulk
inserts in chunks, each chunk its own short transaction, so a million runs take seconds.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, select

from taskledger.enums import TERMINAL_STATUSES
from taskledger.store.bulk import bulk_insert, insert_rendered, render_rows
from taskledger.store.engine import for_writing, is_sqlite
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    Instruction,
    Project,
    Room,
    RoomParticipant,
    Run,
    Task,
    TaskDependency,
)
from taskledger.store.partitions import ensure_partitions
from taskledger.store.types import utcnow

TASK_NAMES = (
    "ingest",
    "summarize",
    "classify",
    "embed",
    "crawl",
    "review",
    "deploy",
    "notify",
    "backup",
    "translate",
    "evaluate",
    "plan",
)
RUN_STATUSES = (
    ("completed", 70),
    ("failed", 10),
    ("cancelled", 5),
    ("running", 5),
    ("queued", 5),
    ("awaiting_approval", 5),
)
AGENT_TYPES = ("generic", "planner", "worker", "reviewer")
ROOM_NAMES = ("general", "planning", "reviews", "incidents", "research", "releases")
#: The share of tasks that belong to a room.
ROOM_SHARE = 0.4
RUN_COLUMNS = (
    "project_id",
    "agent_id",
    "task_id",
    "task",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "inputs",
    "outputs_uri",
    "log_excerpt",
    "approval_state",
    "approver",
    "webhook_notified_at",
    "idempotency_key",
    "created_at",
    "updated_at",
)
CHUNK = 50_000


@dataclass
class GenerateReport:
    """How many rows of each table were written."""

    project_id: uuid.UUID
    counts: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int], None]


class _Generator:
    def __init__(
        self, engine: Engine, project_id: uuid.UUID, *, days: float, seed: int | None, now: datetime
    ) -> None:
        self.engine = engine
        self.project_id = project_id
        self.days = days
        self.rng = random.Random(seed)
        # Rooms draw from their own stream, so a seed gives the same agents, tasks and runs as
        # it did before rooms existed.
        self.room_rng = random.Random(None if seed is None else f"{seed}-rooms")
        self.now = now
        self.report = GenerateReport(project_id)

    def _when(self, *, max_days: float | None = None) -> datetime:
        span = (max_days if max_days is not None else self.days) * 86_400
        return self.now - timedelta(seconds=self.rng.random() * span)

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _insert(self, model: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        with for_writing(self.engine).connect() as conn:
            if is_sqlite(conn):
                # A large page cache keeps index maintenance in memory during the load.
                conn.exec_driver_sql("PRAGMA cache_size = -262144")
                conn.commit()
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                with conn.begin():
                    tuples = [tuple(row[c] for c in columns) for row in chunk]
                    bulk_insert(conn, model.__table__, columns, tuples)
        name = model.__tablename__
        self.report.counts[name] = self.report.counts.get(name, 0) + len(rows)

    def agents(self, count: int) -> list[uuid.UUID]:
        rows: list[dict[str, Any]] = []
        for i in range(count):
            created = self._when()
            rows.append(
                {
                    "id": self._uuid(),
                    "project_id": self.project_id,
                    "name": f"agent-{i + 1:03d}-{self.rng.getrandbits(24):06x}",
                    "nickname": None,
                    "agent_type": self.rng.choice(AGENT_TYPES),
                    "status": self.rng.choice(("online", "offline", "busy")),
                    "capabilities": self.rng.sample(TASK_NAMES, 3),
                    "config": {"max_parallel": 4},
                    "is_active": True,
                    "last_heartbeat_at": self._when(max_days=1),
                    "created_at": created,
                    "updated_at": created,
                }
            )
        self._insert(Agent, rows)
        return [r["id"] for r in rows]

    def rooms(self, count: int, agent_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Rooms, each with a few of the agents and the project's owner taking part; one room in
        each few is archived, and some agents have left the rooms they were in."""
        with self.engine.connect() as conn:
            owner_id = conn.execute(
                select(Project.owner_id).where(Project.id == self.project_id)
            ).scalar_one()
        rng = self.room_rng
        rooms: list[dict[str, Any]] = []
        people: list[dict[str, Any]] = []
        for i in range(count):
            created = self._when()
            room_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            base = ROOM_NAMES[i % len(ROOM_NAMES)]
            rooms.append(
                {
                    "id": room_id,
                    "project_id": self.project_id,
                    # Unique across calls too: generating again adds rooms to the same project.
                    "name": f"{base}-{rng.getrandbits(24):06x}",
                    "topic": f"{base} of the project",
                    "created_by": owner_id,
                    "archived_at": self.now if i % 4 == 3 else None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            members = [("user", owner_id, "owner")] + [
                ("agent", agent_id, rng.choice(("member", "member", "observer")))
                for agent_id in rng.sample(agent_ids, k=min(len(agent_ids), rng.randint(1, 4)))
            ]
            for kind, who, role in members:
                joined = created + timedelta(minutes=rng.randint(0, 600))
                left = kind == "agent" and rng.random() < 0.2
                people.append(
                    {
                        "project_id": self.project_id,
                        "room_id": room_id,
                        "participant_id": who,
                        "participant_type": kind,
                        "role": role,
                        "joined_at": joined,
                        "left_at": joined + timedelta(hours=rng.randint(1, 48)) if left else None,
                    }
                )
        self._insert(Room, rooms)
        self._insert(RoomParticipant, people)
        return [r["id"] for r in rooms]

    def tasks(
        self, count: int, agent_ids: list[uuid.UUID], room_ids: list[uuid.UUID] | None = None
    ) -> list[uuid.UUID]:
        """Tasks in dependency order; a task only started or finished once its deps completed.
        A share of them (``ROOM_SHARE``) belong to one of ``room_ids``."""
        rows: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []
        for i in range(count):
            deps = self.rng.sample(range(i), k=min(i, self.rng.choice((0, 0, 1, 1, 2))))
            ready = all(rows[d]["status"] == "completed" for d in deps)
            if ready:
                status = self.rng.choices(
                    ("completed", "in_progress", "pending", "failed", "cancelled"),
                    (60, 15, 15, 5, 5),
                )[0]
            else:
                status = self.rng.choice(("pending", "pending", "cancelled"))
            created = self._when()
            started = created + timedelta(minutes=self.rng.randint(1, 600))
            rows.append(
                {
                    "id": self._uuid(),
                    "project_id": self.project_id,
                    "title": f"{self.rng.choice(TASK_NAMES)} batch {i + 1}",
                    "description": None,
                    "status": status,
                    "priority": self.rng.choice(("low", "medium", "high")),
                    "assigned_to": self.rng.choice(agent_ids) if agent_ids else None,
                    "assigned_to_type": "agent" if agent_ids else None,
                    "created_by": None,
                    "started_at": started if status != "pending" else None,
                    "completed_at": (started + timedelta(minutes=self.rng.randint(1, 240)))
                    if status in TERMINAL_STATUSES
                    else None,
                    "due_date": created + timedelta(days=self.rng.randint(1, 30)),
                    "result": {"ok": True} if status == "completed" else None,
                    "room_id": self.room_rng.choice(room_ids)
                    if room_ids and self.room_rng.random() < ROOM_SHARE
                    else None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            edges.extend({"task_id": rows[i]["id"], "depends_on_id": rows[d]["id"]} for d in deps)
        self._insert(Task, rows)
        self._insert(TaskDependency, edges)
        return [r["id"] for r in rows]

    def sessions_and_traffic(self, agent_ids: list[uuid.UUID], per_agent: int) -> None:
        sessions, connections, instructions, acks = [], [], [], []
        for agent_id in agent_ids:
            for n in range(per_agent):
                started = self._when()
                active = n == per_agent - 1
                ended = None if active else started + timedelta(hours=self.rng.uniform(0.1, 12))
                sid = self._uuid()
                sessions.append(
                    {
                        "id": sid,
                        "project_id": self.project_id,
                        "agent_id": agent_id,
                        "status": "active"
                        if active
                        else self.rng.choices(("completed", "terminated", "error"), (80, 10, 10))[
                            0
                        ],
                        "experimental_parameters": {
                            "temperature": round(self.rng.random(), 2),
                            "model": self.rng.choice(("small", "large")),
                        },
                        "ended_at": ended,
                        "created_at": started,
                        "updated_at": ended or started,
                    }
                )
                for _ in range(self.rng.randint(1, 3)):
                    beat = started + timedelta(minutes=self.rng.randint(0, 600))
                    beat = min(beat, self.now)
                    still_open = active or self.rng.random() < 0.1
                    connections.append(
                        {
                            "project_id": self.project_id,
                            "agent_id": agent_id,
                            "session_id": sid,
                            "status": "active" if still_open else "closed",
                            "last_heartbeat_at": beat,
                            "closed_at": None if still_open else beat,
                            "close_reason": None if still_open else "agent disconnected",
                            "created_at": started,
                            "updated_at": beat,
                        }
                    )
                for _ in range(self.rng.randint(2, 6)):
                    created = started + timedelta(minutes=self.rng.randint(0, 300))
                    created = min(created, self.now)
                    iid = self._uuid()
                    status = self.rng.choices(
                        ("completed", "failed", "expired", "sent", "pending"), (60, 10, 10, 10, 10)
                    )[0]
                    instructions.append(
                        {
                            "id": iid,
                            "project_id": self.project_id,
                            "agent_id": agent_id,
                            "session_id": sid,
                            "payload": {
                                "action": self.rng.choice(TASK_NAMES),
                                "args": [self.rng.randint(1, 99)],
                            },
                            "metadata": {"priority": self.rng.choice(("low", "high"))},
                            "status": status,
                            "expires_at": created + timedelta(hours=1),
                            "created_at": created,
                            "updated_at": created,
                        }
                    )
                    if status != "pending" and self.rng.random() < 0.6:
                        for ack_status in ("received", "completed")[: self.rng.randint(1, 2)]:
                            acks.append(
                                {
                                    "project_id": self.project_id,
                                    "instruction_id": iid,
                                    "agent_id": agent_id,
                                    "status": ack_status,
                                    "message": f"{ack_status} by agent",
                                    "created_at": created,
                                }
                            )
        self._insert(AgentSession, sessions)
        self._insert(AgentConnection, connections)
        self._insert(Instruction, instructions)
        self._insert(Acknowledgement, acks)

    def runs(
        self,
        count: int,
        agent_ids: list[uuid.UUID],
        task_ids: list[uuid.UUID],
        progress: Progress | None,
    ) -> None:
        """Runs in chunks; the next chunk is generated while the previous one is inserted."""
        table: Table = Run.__table__  # type: ignore[assignment]
        with (
            for_writing(self.engine).connect() as conn,
            ThreadPoolExecutor(max_workers=1) as writer,
        ):
            if is_sqlite(conn):
                conn.exec_driver_sql("PRAGMA cache_size = -262144")
                conn.commit()

            def write(rendered: list[tuple[Any, ...]]) -> int:
                # Mostly inside SQLite, which releases the GIL: it overlaps the next chunk's
                # generation in the calling thread.
                with conn.begin():
                    return insert_rendered(conn, table, RUN_COLUMNS, rendered)

            pending: Future[int] | None = None
            written = 0
            while written < count:
                rows = self._run_rows(
                    written, min(CHUNK, count - written), count, agent_ids, task_ids
                )
                if pending is not None:
                    self._count(Run, pending.result(), progress)
                rendered = render_rows(table, RUN_COLUMNS, conn.dialect.name, rows)
                pending = writer.submit(write, rendered)
                written += len(rows)
            if pending is not None:
                self._count(Run, pending.result(), progress)

    def _count(self, model: Any, n: int, progress: Progress | None) -> None:
        name = model.__tablename__
        self.report.counts[name] = self.report.counts.get(name, 0) + n
        if progress:
            progress(n)

    def _run_rows(
        self,
        first: int,
        n: int,
        total: int,
        agent_ids: list[uuid.UUID],
        task_ids: list[uuid.UUID],
    ) -> list[tuple[Any, ...]]:
        rng = self.rng
        random_ = rng.random
        statuses = [s for s, _ in RUN_STATUSES]
        weights = [w for _, w in RUN_STATUSES]
        # Start times rise with the id, as in an append-only history (and as the indexes like).
        origin = self.now - timedelta(days=self.days)
        step = self.days * 86_400 / max(total, 1)
        agents: list[uuid.UUID | None] = list(agent_ids) or [None]
        rows: list[tuple[Any, ...]] = []
        for offset, status in enumerate(rng.choices(statuses, weights, k=n), start=first):
            task = TASK_NAMES[int(random_() * len(TASK_NAMES))]
            started = origin + timedelta(seconds=(offset + random_()) * step)
            duration = int(rng.lognormvariate(9, 1.2)) if status in TERMINAL_STATUSES else None
            finished = started + timedelta(milliseconds=duration) if duration else None
            run_id = f"{rng.getrandbits(48):012x}"
            count = int(random_() * 500) + 1
            rows.append(
                (
                    self.project_id,
                    agents[int(random_() * len(agents))] if random_() < 0.9 else None,
                    task_ids[int(random_() * len(task_ids))]
                    if task_ids and random_() < 0.05
                    else None,
                    task,
                    run_id,
                    status,
                    started,
                    finished,
                    duration,
                    {"items": count, "source": f"batch-{int(random_() * 50) + 1}"},
                    f"s3://outputs/{task}/{run_id}.json" if status == "completed" else None,
                    f"error: {task} step {count % 9 + 1} timed out"
                    if status == "failed"
                    else f"{task}: processed {count} items",
                    "pending" if status == "awaiting_approval" else None,
                    None,
                    None,
                    None,
                    started,
                    finished or started,
                )
            )
        return rows


def generate(
    engine: Engine,
    project_id: uuid.UUID,
    *,
    runs: int,
    days: float,
    agents: int = 5,
    seed: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> GenerateReport:
    """Fill ``project_id`` with realistic data; runs start uniformly over the last ``days``.

    Args:
        engine: Where to write.
        project_id: An existing project.
        runs: How many runs.
        days: The span of time the data covers, ending now.
        agents: How many agents (rooms, sessions, connections and instructions scale with it).
        seed: Makes the output repeatable.
        now: The end of the span (default: the current time).
        progress: Called with the number of runs written after each chunk.
    """
    gen = _Generator(engine, project_id, days=days, seed=seed, now=now or utcnow())
    # PostgreSQL: the runs go to partitions of their own, not to the default one.
    ensure_partitions(engine, cover=(gen.now - timedelta(days=days), gen.now))
    agent_ids = gen.agents(agents)
    room_ids = gen.rooms(max(2, min(len(ROOM_NAMES), agents)), agent_ids)
    task_ids = gen.tasks(max(10, agents * 4), agent_ids, room_ids)
    gen.sessions_and_traffic(agent_ids, per_agent=max(2, min(20, int(days // 7) + 2)))
    gen.runs(runs, agent_ids, task_ids, progress)
    return gen.report
