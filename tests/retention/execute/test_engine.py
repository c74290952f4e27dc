"""Planner and executor on real data: preview is exact, everything is archived first, holds and
unfinished dependencies protect rows, side effects of deletes are archived too."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from taskledger.enums import HoldScope, RetentionTrigger
from taskledger.errors import SafeguardRefused
from taskledger.retention.archive.reader import ArchiveReader, verify
from taskledger.retention.archive.stores import ArchiveStorageError, ArchiveTarget, open_store
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.execute.executor import Executor, PlanExceeded
from taskledger.retention.execute.request import RetentionRequest
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.plan import holds
from taskledger.retention.plan.holds import HeldSet
from taskledger.retention.plan.planner import Plan, build_plan
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.tables import is_scrub_marker
from taskledger.store.models import (
    Acknowledgement,
    AgentConnection,
    AgentSession,
    RetentionRun,
    Run,
    Task,
    TaskDependency,
)
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import count, populated, run_policy, sessions_of


@pytest.mark.parametrize("preset", ["default", "development", "ops", "scientific"])
def test_preview_is_exact_and_everything_is_archived(
    engine: Engine, tmp_path: Path, preset: str
) -> None:
    populated(engine, runs=4000, days=800)
    previewed, report = run_policy(engine, PRESETS[preset], tmp_path)
    assert report.outcome == "ok"
    assert any(r.matched for r in previewed.rules), "the data should give every preset work"
    by_rule = {r.name: r for r in report.rules}
    archived: dict[str, int] = {}
    if report.archive_uri:
        assert verify(report.archive_uri).ok
        with ArchiveReader(report.archive_uri) as reader:
            for part in reader.manifest.files:
                if part.action in ("delete", "scrub", "expire"):
                    archived[part.rule] = archived.get(part.rule, 0) + part.rows
    for rule in previewed.rules:
        assert by_rule[rule.name].affected == rule.matched, rule.name
        assert archived.get(rule.name, 0) == rule.matched, rule.name
    # Nothing is left to do, once rows that the run itself made eligible (instructions whose
    # acknowledgements it deleted) have had their turn.
    run_policy(engine, PRESETS[preset], tmp_path)
    again = preview_policy(
        sessions_of(engine),
        RetentionRequest(
            actor="t",
            trigger=RetentionTrigger.CLI,
            policy=PRESETS[preset],
            archive=ArchiveTarget(str(tmp_path)),
        ),
    )
    assert sum(r.matched for r in again.rules) == 0


def test_actions_do_what_they_say(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=2000, days=400)
    now = utcnow()
    with Session(engine) as session:
        stale_ids = set(
            session.scalars(
                select(AgentConnection.id).where(
                    AgentConnection.status == "active",
                    AgentConnection.last_heartbeat_at < now - timedelta(hours=24),
                )
            )
        )
        old_terminal_runs = set(
            session.scalars(
                select(Run.id).where(
                    Run.status.in_(["completed", "failed", "cancelled"]),
                    Run.started_at < now - timedelta(days=90),
                )
            )
        )
        originals = {
            s.id: s.experimental_parameters
            for s in session.scalars(
                select(AgentSession).where(
                    AgentSession.status.in_(["completed", "terminated", "error"]),
                    AgentSession.ended_at < now - timedelta(days=90),
                )
            )
        }
    assert stale_ids and old_terminal_runs and originals
    _, report = run_policy(engine, PRESETS["default"], tmp_path, now=now)
    with Session(engine) as session:
        assert not session.scalars(select(Run.id).where(Run.id.in_(old_terminal_runs))).all()
        for conn in session.scalars(
            select(AgentConnection).where(AgentConnection.id.in_(stale_ids))
        ):
            assert conn.status == "timeout" and conn.closed_at is not None
            assert conn.close_reason
        for sess in session.scalars(
            select(AgentSession).where(AgentSession.id.in_(list(originals)))
        ):
            marker = sess.experimental_parameters
            assert is_scrub_marker(marker)
            original = originals[sess.id]
            size = len(json.dumps(original, sort_keys=True, separators=(",", ":")).encode())
            assert marker["original_size"] == size
    assert report.archive_uri is not None


def test_holds_protect_every_row_beneath_them(engine: Engine, tmp_path: Path) -> None:
    project_id = populated(engine, runs=1500, days=400)
    other_id = populated(engine, runs=1500, days=400, seed=2)
    with Session(engine) as session:
        agent_id = session.scalar(
            select(AgentSession.agent_id).where(AgentSession.project_id == project_id).limit(1)
        )
        run_id = session.scalar(
            select(Run.id)
            .where(Run.project_id == project_id, Run.status == "completed")
            .order_by(Run.id)
            .limit(1)
        )
    sessions = sessions_of(engine)
    with sessions.begin() as session:
        holds.add_hold(
            session, scope=HoldScope.PROJECT, target_id=str(other_id), reason="legal", actor="t"
        )
        holds.add_hold(
            session, scope=HoldScope.AGENT, target_id=str(agent_id), reason="audit", actor="t"
        )
        holds.add_hold(
            session, scope=HoldScope.RUN, target_id=str(run_id), reason="case", actor="t"
        )

    def snapshot() -> dict[str, set[object]]:
        with Session(engine) as session:
            return {
                "other": {
                    (r.id, r.status, str(r.inputs), r.log_excerpt)
                    for r in session.execute(
                        select(Run.id, Run.status, Run.inputs, Run.log_excerpt).where(
                            Run.project_id == other_id
                        )
                    )
                },
                "agent_runs": set(session.scalars(select(Run.id).where(Run.agent_id == agent_id))),
                "agent_sessions": {
                    (s.id, str(s.experimental_parameters))
                    for s in session.scalars(
                        select(AgentSession).where(AgentSession.agent_id == agent_id)
                    )
                },
                "agent_conns": {
                    (c.id, c.status)
                    for c in session.scalars(
                        select(AgentConnection).where(AgentConnection.agent_id == agent_id)
                    )
                },
                "run": set(session.scalars(select(Run.id).where(Run.id == run_id))),
            }

    before = snapshot()
    previewed, _ = run_policy(engine, PRESETS["development"], tmp_path)
    assert sum(r.held for r in previewed.rules) > 0
    assert snapshot() == before
    # Released, the same rows become eligible.
    with sessions.begin() as session:
        for hold in holds.list_holds(session, active_only=True, limit=10, cursor=None)[0]:
            holds.release_hold(session, hold_id=hold.id, actor="t")
    run_policy(engine, PRESETS["development"], tmp_path)
    assert snapshot() != before


def test_task_deletion_archives_edges_and_links(engine: Engine, tmp_path: Path) -> None:
    project_id = populated(engine, runs=300, days=30)
    old = utcnow() - timedelta(days=60)
    with Session(engine) as session, session.begin():
        done = [
            Task(project_id=project_id, title=f"done {i}", status="completed", completed_at=old)
            for i in range(3)
        ]
        waiting = Task(project_id=project_id, title="waiting", status="pending")
        session.add_all([*done, waiting])
        session.flush()
        # done[0] is needed by an unfinished task: it must stay.
        session.add_all(
            [
                TaskDependency(task_id=waiting.id, depends_on_id=done[0].id),
                TaskDependency(task_id=done[2].id, depends_on_id=done[1].id),
            ]
        )
        session.add(
            Run(
                project_id=project_id,
                task="x",
                run_id="linked",
                status="running",
                task_id=done[1].id,
            )
        )
        ids = [t.id for t in done]
    policy = parse_policy(
        '[[rule]]\nname="old-tasks"\ntable="tasks"\nolder_than="30d"\n'
        f'status=["completed"]\naction="delete"\nprojects=["{project_id}"]\n',
        default_name="t",
    )
    previewed, report = run_policy(engine, policy, tmp_path)
    rule = report.rules[0]
    assert previewed.rules[0].protected >= 1
    assert rule.affected == previewed.rules[0].matched
    with Session(engine) as session:
        assert session.get(Task, ids[0]) is not None
        assert session.get(Task, ids[1]) is None and session.get(Task, ids[2]) is None
        linked = session.scalar(select(Run).where(Run.run_id == "linked"))
        assert linked is not None and linked.task_id is None
    assert rule.cascaded.get("task_dependencies", 0) >= 1
    assert rule.unlinked.get("runs", 0) == 1
    with ArchiveReader(report.archive_uri or "") as reader:
        actions = {(p.table, p.action) for p in reader.manifest.files}
    assert ("task_dependencies", "cascade") in actions and ("runs", "unlink") in actions


def test_deleting_instructions_archives_their_acknowledgements(
    engine: Engine, tmp_path: Path
) -> None:
    populated(engine, runs=200, days=200)
    policy = parse_policy(
        '[[rule]]\nname="all-old"\ntable="instructions"\nolder_than="30d"\n'
        'action="delete"\nallow_audit_deletion=true\n',
        default_name="t",
    )
    acks_before = count(engine, Acknowledgement)
    _, report = run_policy(engine, policy, tmp_path)
    gone = acks_before - count(engine, Acknowledgement)
    assert gone > 0
    assert report.rules[0].cascaded["acknowledgements"] == gone
    with ArchiveReader(report.archive_uri or "") as reader:
        cascaded = sum(
            p.rows
            for p in reader.manifest.files
            if p.table == "acknowledgements" and p.action == "cascade"
        )
    assert cascaded == gone


def test_unarchived_rules_are_audited(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=500, days=200)
    policy = parse_policy(
        '[[rule]]\nname="drop"\ntable="runs"\nolder_than="100d"\naction="delete"\narchive=false\n',
        default_name="t",
    )
    _, report = run_policy(engine, policy, tmp_path / "arch")
    assert report.rules[0].affected > 0
    assert report.archive_uri is None
    assert not (tmp_path / "arch").exists()
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun).where(RetentionRun.mode == "execute")).one()
    assert audit.counts["rules"][0]["archive"] is False
    assert audit.outcome == "ok"


def test_a_stale_plan_is_refused(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=500, days=200)
    policy = PRESETS["ops"]
    sessions = sessions_of(engine)
    request = RetentionRequest(
        actor="t", trigger=RetentionTrigger.API, policy=policy, archive=ArchiveTarget(str(tmp_path))
    )
    previewed = preview_policy(sessions, request)
    completed = next(r for r in previewed.rules if r.name == "runs-completed")
    # Many more runs come of age than the preview showed.
    with Session(engine) as session, session.begin():
        session.execute(update(Run).values(started_at=utcnow() - timedelta(days=300)))
    with pytest.raises(SafeguardRefused, match="stale"):
        execute_policy(engine, sessions, request.confirming(previewed))
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun).where(RetentionRun.mode == "execute")).one()
    assert audit.outcome == "refused" and "stale" in (audit.error or "")
    assert count(engine, Run) == 500 + 0 * completed.matched


def test_every_preview_and_execution_is_audited(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=300, days=200)
    run_policy(engine, PRESETS["default"], tmp_path)
    with Session(engine) as session:
        rows = session.scalars(select(RetentionRun).order_by(RetentionRun.id)).all()
    assert [r.mode for r in rows] == ["preview", "execute"]
    assert rows[0].plan_id == rows[1].plan_id
    assert all(r.policy_hash == PRESETS["default"].policy_hash for r in rows)
    assert rows[1].archive_uri and rows[1].finished_at and rows[1].actor == "test"
    assert all(r.counts for r in rows)


# --- rules of one table: the first matching rule keeps its rows --------------------------------

OVERLAPPING = {
    # A scrub takes pending instructions; the expiry after it (of pending and sent ones) must
    # not take the ones it scrubbed.
    "instructions": """
[[rule]]
name = "scrub-pending"
table = "instructions"
older_than = "1d"
status = ["pending"]
action = "scrub"

[[rule]]
name = "expire-rest"
table = "instructions"
older_than = "1d"
action = "expire"
""",
    # An expiry moves connections out of `active`; the delete after it must not take them.
    "agent_connections": """
[[rule]]
name = "expire-active"
table = "agent_connections"
older_than = "1d"
status = ["active"]
action = "expire"

[[rule]]
name = "delete-old"
table = "agent_connections"
older_than = "1d"
action = "delete"
""",
}


@pytest.mark.parametrize("table", sorted(OVERLAPPING))
def test_a_row_is_taken_by_one_rule_only(engine: Engine, tmp_path: Path, table: str) -> None:
    populated(engine, runs=200, days=400, agents=6)
    policy = parse_policy(OVERLAPPING[table], default_name="overlap")
    previewed, report = run_policy(engine, policy, tmp_path)
    assert report.outcome == "ok"
    matched = {r.name: r.matched for r in previewed.rules}
    assert all(matched.values()), matched
    assert {r.name: r.affected for r in report.rules} == matched
    with ArchiveReader(report.archive_uri or "") as reader:
        keys = [row["id"] for part in reader.manifest.files for row in reader.iter_rows(part)]
    assert len(keys) == len(set(keys)) == sum(matched.values())


def _runs_in_batches_of_5(engine: Engine, *, archive: bool) -> Plan:
    """A populated project and the plan of one rule deleting its runs, 5 at a time (on
    PostgreSQL too: the partitions it covers whole are not dropped whole, see
    test_partitions)."""
    populated(engine, runs=60, days=400)
    policy = parse_policy(
        '[[rule]]\nname = "r"\ntable = "runs"\nolder_than = "1h"\naction = "delete"\n'
        f"archive = {str(archive).lower()}\nbatch_size = 5\n",
        default_name="x",
    )
    plan = build_plan(policy, utcnow(), held=HeldSet(), project_ids={}, dialect=engine.dialect.name)
    batched = tuple(replace(s, whole_partitions=False) for s in plan.selections)
    return replace(plan, selections=batched)


def _writer(root: Path, plan: Plan, run_id: str) -> ArchiveWriter:
    return ArchiveWriter(
        open_store(str(root)),
        run_id=run_id,
        started_at=plan.now,
        policy_name="x",
        policy_hash=None,
        schema_revision=None,
    )


@pytest.mark.parametrize("archive", [False, True], ids=["unarchived", "archived"])
def test_a_rule_that_outgrows_its_plan_stops_the_run(
    engine: Engine, tmp_path: Path, archive: bool
) -> None:
    plan = _runs_in_batches_of_5(engine, archive=archive)
    before = count(engine, Run)
    writer = _writer(tmp_path, plan, "overrun") if archive else None
    executor = Executor(engine, writer=writer, now=plan.now)
    # The plan counted 20 rows: 22 (10 % more) may go, the batch that would pass that may not.
    with pytest.raises(PlanExceeded, match="more than 22 rows"):
        executor.run(plan, expected={"r": 20})
    assert executor.outcomes[0].affected == 20
    assert count(engine, Run) == before - 20
    if writer is not None:  # the refused batch was neither deleted nor archived
        assert sum(part.rows for part in writer.manifest.files) == 20


def test_a_part_that_cannot_be_written_leaves_its_rows(engine: Engine, tmp_path: Path) -> None:
    """The archive directory is replaced by a file after the first batch: the second batch's
    part cannot be written, so its rows stay (its delete, where it ran first, is rolled back)."""
    plan = _runs_in_batches_of_5(engine, archive=True)
    writer = _writer(tmp_path, plan, "broken")
    run_dir = tmp_path / writer.prefix
    before = count(engine, Run)

    def break_the_archive(_rule: str, _rows: int) -> None:
        if run_dir.is_dir():
            run_dir.rename(tmp_path / "moved")
            run_dir.write_text("not a directory")

    executor = Executor(engine, writer=writer, now=plan.now, progress=break_the_archive)
    with pytest.raises(ArchiveStorageError):
        executor.run(plan)
    assert count(engine, Run) == before - 5
    with ArchiveReader(str(tmp_path / "moved")) as reader:
        assert [part.rows for part in reader.manifest.files] == [5]


@pytest.mark.parametrize(("level", "flag"), [(1, 4), (6, 0), (9, 2)])
def test_parts_are_compressed_at_the_configured_level(
    engine: Engine, tmp_path: Path, level: int, flag: int
) -> None:
    """gzip's header records the speed of its compression (XFL: 4 fastest, 2 best, else 0)."""
    populated(engine, runs=200, days=400)
    _, report = run_policy(engine, PRESETS["default"], tmp_path, gzip_level=level)
    parts = list(Path(report.archive_uri or "").glob("*.jsonl.gz"))
    assert parts and {part.read_bytes()[8] for part in parts} == {flag}
