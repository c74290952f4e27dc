"""Single-use plans: a plan is claimed by exactly one execution, also when executions race, and
the CLI and the scheduler (which preview and execute in one go) spend their own plans."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.audit import open_audit
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.plan.plans import ConfirmedPlan, PlanSpent, claim_plan
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy
from taskledger.retention.safeguards.lock import LockHeld
from taskledger.retention.scheduler import Scheduler
from taskledger.settings import Settings
from taskledger.store.models import RetentionRun, Run
from taskledger.store.types import utcnow
from tests.helpers import changed
from tests.retention.engine_helpers import count, populated, sessions_of

RACERS = 6


def _request(  # type: ignore[no-untyped-def]
    policy: Policy, archive_root: Path, *, reason=None, force=False
) -> RetentionRequest:
    return RetentionRequest(
        actor="t",
        trigger=RetentionTrigger.API,
        reason=reason,
        policy=policy,
        archive=ArchiveTarget(str(archive_root)),
        safeguards=Safeguards(force=force),
    )


def _race(target, args_of):  # type: ignore[no-untyped-def]
    """Run ``target(*args_of(i))`` in RACERS threads released together; their results."""
    barrier = threading.Barrier(RACERS)
    results: list[object] = [None] * RACERS

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(*args_of(i))
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_racing_claims_of_one_plan_let_exactly_one_through(engine: Engine, tmp_path: Path) -> None:
    sessions = sessions_of(engine)
    previewed = preview_policy(sessions, _request(PRESETS["ops"], tmp_path))
    confirmed = ConfirmedPlan.from_preview(previewed)
    executions = [
        open_audit(sessions, actor="t", trigger="api", mode="execute").id for _ in range(RACERS)
    ]
    results = _race(
        lambda execution: claim_plan(engine, confirmed, execution, ttl=3600),
        lambda i: (executions[i],),
    )
    claimed = [executions[i] for i, r in enumerate(results) if r is None]
    assert len(claimed) == 1, results
    assert all(isinstance(r, PlanSpent) for r in results if r is not None), results
    assert all(f"retention run {claimed[0]}" in str(r) for r in results if r is not None)
    with Session(engine) as session:
        row = session.get(RetentionRun, previewed.retention_run_id)
        assert row is not None and row.consumed_by == claimed[0]


def test_racing_executions_of_one_plan_execute_once(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=600, days=300)
    sessions = sessions_of(engine)
    request = _request(PRESETS["ops"], tmp_path / "archives", reason="race", force=True)
    previewed = preview_policy(sessions, request)
    confirmed = request.confirming(previewed)
    before = count(engine, Run)

    def execute() -> str:
        return execute_policy(engine, sessions, confirmed).outcome

    results = _race(execute, lambda i: ())
    assert results.count("ok") == 1, results
    # The others were refused: by the lock while the winner ran, or as spent after it.
    assert all(isinstance(r, PlanSpent | LockHeld) for r in results if r != "ok"), results
    assert count(engine, Run) == before - previewed.total
    with Session(engine) as session:
        outcomes = Counter(
            session.scalars(
                select(RetentionRun.outcome).where(RetentionRun.mode == "execute")
            ).all()
        )
    assert outcomes == {"ok": 1, "refused": RACERS - 1}


def test_the_cli_spends_the_plan_it_previews(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=400, days=300)
    env = {
        "TASKLEDGER_DATABASE_URL": settings.resolved_database_url,
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
    }
    args = ["retention", "run", "--preset", "ops", "--yes", "--json", "--force", "--reason", "x"]
    reports = []
    for _ in range(2):  # each run previews afresh, so each has a plan of its own
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.stderr
        reports.append(json.loads(result.stdout))
    with Session(engine) as session:
        previews = session.scalars(
            select(RetentionRun).where(RetentionRun.mode == "preview").order_by(RetentionRun.id)
        ).all()
    assert [p.consumed_by for p in previews] == [r["retention_run_id"] for r in reports]
    assert [p.plan_id for p in previews] == [r["plan_id"] for r in reports]


def test_the_scheduler_spends_the_plan_of_each_tick(settings: Settings, engine: Engine) -> None:
    populated(engine, runs=200, days=30)
    scheduler = Scheduler(
        engine,
        sessions_of(engine),
        changed(settings, scheduler__schedule="15 3 * * 1", archive__url=str(settings.data_dir)),
    )
    for _ in range(2):
        scheduler.run_tick(utcnow())
    with Session(engine) as session:
        rows = session.scalars(
            select(RetentionRun).where(RetentionRun.trigger == "schedule").order_by(RetentionRun.id)
        ).all()
    assert [(r.mode, r.outcome) for r in rows] == [
        ("preview", "ok"),
        ("execute", "ok"),
        ("preview", "ok"),
        ("execute", "ok"),
    ]
    assert rows[0].consumed_by == rows[1].id and rows[2].consumed_by == rows[3].id
    assert rows[1].holder and rows[1].holder.startswith(rows[1].actor)
