"""PostgreSQL: runs partitioned by started_at, and retention's whole-partition path.

A rule that selects every row of a partition drops it (after archiving it whole); a partition
with a single row the rule must keep (held, not terminal, another project's, newer than the
cutoff) goes through the batched path instead, and keeps that row. The archive holds exactly the
rows that left, and restore gives them back.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from taskledger.api import create_app
from taskledger.retention.archive.format import rows_of
from taskledger.retention.archive.reader import list_archives
from taskledger.retention.archive.stores import open_store
from taskledger.retention.archive.writer import ArchiveWriter
from taskledger.retention.execute import partitions
from taskledger.retention.execute.executor import Executor, PlanExceeded
from taskledger.retention.plan.holds import HeldSet
from taskledger.retention.plan.planner import build_plan
from taskledger.retention.plan.preview import make_plan
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.restore.restore import restore
from taskledger.settings import Settings
from taskledger.store.engine import for_writing
from taskledger.store.models import Project, RetentionHold, Run, User
from taskledger.store.partitions import (
    DEFAULT_PARTITION,
    KEYS_TABLE,
    detach_and_drop,
    ensure_partitions,
    forget_keys,
    list_partitions,
    period_start,
)
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import table_hashes
from tests.serving import wait_until

NOW = datetime.now(UTC)


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("runs is partitioned on PostgreSQL only")
    return engine


def _policy(older_than: str = "90d", extra: str = "", batch_size: int = 50) -> object:
    return parse_policy(
        f"""
        name = "parts"
        batch_size = {batch_size}
        max_table_fraction = 1.0
        [[rule]]
        name = "old-runs"
        table = "runs"
        older_than = "{older_than}"
        action = "delete"
        {extra}
        """,
        default_name="parts",
    )


def _archived_run_keys(root: Path) -> list[int]:
    keys = []
    for part in root.rglob("runs-*.jsonl.gz"):
        keys += [row["id"] for row in rows_of(part.read_bytes())]
    return keys


def _run_ids(engine: Engine, *where: object) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Run.id).where(*where)))


def test_whole_partitions_are_archived_then_dropped(pg: Engine, tmp_path: Path) -> None:
    populated(pg, runs=2000, days=200)
    original = table_hashes(pg)
    cutoff = NOW - timedelta(days=90)
    old = _run_ids(pg, Run.started_at < cutoff)
    before = {p.name for p in list_partitions(pg.connect())}
    previewed, report = run_policy(pg, _policy(), tmp_path / "archives", now=NOW)
    assert report.outcome == "ok"

    paths = previewed.rules[0].partitions
    dropped = [p["partition"] for p in paths if p["path"] == "drop"]
    batched = [p["partition"] for p in paths if p["path"] == "batched"]
    assert dropped, paths
    # The partition holding the cutoff is only partly older: batched.
    assert batched == [f"runs_p{period_start(cutoff, 'month'):%Y%m%d}"], paths
    outcome = report.rules[0]
    assert outcome.partitions == dropped
    assert outcome.affected == len(old)
    with pg.connect() as conn:
        after = {p.name for p in list_partitions(conn)}
    assert before - after == set(dropped)
    assert _run_ids(pg, Run.started_at < cutoff) == set()
    archived = _archived_run_keys(tmp_path / "archives")
    assert sorted(archived) == sorted(old)  # each once

    for archive in list_archives(str(tmp_path / "archives")):
        restore(pg, archive.uri, actor="test", trigger="cli")
    assert table_hashes(pg) == original


def test_a_partition_with_a_row_to_keep_takes_the_batched_path(pg: Engine, tmp_path: Path) -> None:
    project = populated(pg, runs=1500, days=200)
    cutoff = NOW - timedelta(days=90)
    with Session(pg, expire_on_commit=False) as session, session.begin():
        oldest = session.scalars(select(Run).order_by(Run.started_at).limit(3)).all()
        held, running = oldest[0], oldest[1]
        session.add(
            RetentionHold(scope="run", target_id=str(held.id), reason="audit", created_by="t")
        )
        running.status = "running"
        held_month, running_month = (
            period_start(held.started_at, "month"),
            period_start(running.started_at, "month"),
        )
    terminal = ["completed", "failed", "cancelled"]
    kept = {held.id, running.id} | _run_ids(
        pg, Run.started_at < cutoff, Run.status.not_in(terminal)
    )
    policy = _policy(extra='status = ["completed", "failed", "cancelled"]')
    previewed, report = run_policy(pg, policy, tmp_path / "archives", now=NOW)
    assert report.outcome == "ok"
    paths = {p["partition"]: p["path"] for p in previewed.rules[0].partitions}
    for month in {held_month, running_month}:
        assert paths[f"runs_p{month:%Y%m%d}"] == "batched", paths
    assert _run_ids(pg, Run.started_at < cutoff) == kept
    assert project


def test_another_projects_row_keeps_its_partition(pg: Engine, tmp_path: Path) -> None:
    first = populated(pg, runs=800, days=200)
    populated(pg, runs=400, days=200, seed=2)
    with Session(pg) as session:
        name = session.get(Project, first).name  # type: ignore[union-attr]
    policy = _policy(extra=f'projects = ["{name}"]')
    cutoff = NOW - timedelta(days=90)
    others = _run_ids(pg, Run.started_at < cutoff, Run.project_id != first)
    previewed, report = run_policy(pg, policy, tmp_path / "archives", now=NOW)
    assert report.outcome == "ok"
    assert {p["path"] for p in previewed.rules[0].partitions} == {"batched"}
    assert report.rules[0].partitions == []
    assert _run_ids(pg, Run.started_at < cutoff) == others


@pytest.mark.parametrize("statuses", [None, ["completed", "failed", "cancelled"]])
def test_the_preview_adds_up_its_partitions_counts(
    pg: Engine, tmp_path: Path, statuses: list[str] | None
) -> None:
    """The preview counts the rule's rows partition by partition: the same count, oldest and
    newest as one query over the whole selection, the default partition's rows included (and
    the batched path takes those)."""
    project = populated(pg, runs=1200, days=200)
    stray = _add_run(pg, project, NOW - timedelta(days=6 * 365), None)
    with pg.connect() as conn:
        home = conn.scalar(
            text("SELECT tableoid::regclass::text FROM runs WHERE id = :i"), {"i": stray}
        )
    assert home == "runs_default"
    cutoff = NOW - timedelta(days=90)
    where = [Run.started_at < cutoff] + ([Run.status.in_(statuses)] if statuses else [])
    with pg.connect() as conn:
        matched, oldest, newest = conn.execute(
            select(func.count(), func.min(Run.started_at), func.max(Run.started_at)).where(*where)
        ).one()
    extra = f"status = {statuses!r}".replace("'", '"') if statuses else ""
    previewed, report = run_policy(pg, _policy(extra=extra), tmp_path / "archives", now=NOW)
    rule = previewed.rules[0]
    assert (rule.matched, rule.oldest, rule.newest) == (matched, oldest, newest)
    assert sum(p["selected"] for p in rule.partitions) == matched
    default = [p for p in rule.partitions if p["partition"] == "runs_default"]
    assert default == [
        {
            "partition": "runs_default",
            "lower": None,
            "upper": None,
            "rows": 1,
            "selected": 1,
            "path": "batched",
        }
    ]
    assert report.outcome == "ok" and report.rules[0].affected == matched
    assert _run_ids(pg, *where) == set()


SEVERAL_RULES = """
name = "several"
max_table_fraction = 1.0
[[rule]]
name = "scrub-failed"
table = "runs"
older_than = "150d"
action = "scrub"
status = ["failed"]
[[rule]]
name = "by-finish"
table = "runs"
older_than = "170d"
age_column = "finished_at"
action = "delete"
[[rule]]
name = "old"
table = "runs"
older_than = "60d"
action = "delete"
status = ["completed", "failed", "cancelled"]
"""


def test_a_wholly_old_partition_is_counted_on_what_the_rule_asks_beyond_age(pg: Engine) -> None:
    """Counting a partition wholly older than the cutoff on ``beyond_age`` gives what counting it
    on the whole selection gives, with holds, statuses, unfinished runs and earlier rules of the
    same policy on runs; and the partitions add up to one count over the selection."""
    populated(pg, runs=3000, days=200)
    with Session(pg) as session, session.begin():
        oldest = session.scalars(select(Run).order_by(Run.started_at).limit(20)).all()
        session.add(
            RetentionHold(scope="run", target_id=str(oldest[3].id), reason="a", created_by="t")
        )
        agent = next(r.agent_id for r in oldest[5:] if r.agent_id is not None)
        session.add(RetentionHold(scope="agent", target_id=str(agent), reason="b", created_by="t"))
        unfinished = [r.id for r in oldest[10:15]]
        session.execute(update(Run).where(Run.id.in_(unfinished)).values(finished_at=None))
    with Session(pg) as session, session.begin():
        plan = make_plan(session, parse_policy(SEVERAL_RULES, default_name="several"), NOW)
        conn = session.connection()
        compared = 0
        # The last rule (by started_at; the one by finished_at has no partition path) excludes
        # what the two before it take.
        for selection in plan.selections[1:]:
            assert selection.beyond_age is not None
            whole = select(func.count()).select_from(Run).where(selection.eligible)
            paths = partitions.partition_paths(conn, selection)
            if paths is None:
                assert selection.rule.age_column == "finished_at"
                continue
            assert sum(p.selected for p in paths) == session.scalar(whole)
            for partition in list_partitions(conn):
                if partition.upper is not None and partition.upper <= selection.cutoff:
                    unknown = dataclasses.replace(selection, beyond_age=None)
                    assert partitions._counts(conn, selection, partition) == partitions._counts(
                        conn, unknown, partition
                    ), partition
                    compared += 1
    assert compared


def test_a_condition_with_a_subquery_is_counted_on_runs(pg: Engine) -> None:
    """A condition that is not about the row alone (here a subquery on runs itself) is not
    moved onto the partition table, where the subquery would be narrowed to one partition: it is
    counted on runs, restricted to the partition."""
    populated(pg, runs=1500, days=200)
    with Session(pg) as session, session.begin():
        plan = make_plan(session, _policy(), NOW)
        conn = session.connection()
        latest = select(func.max(Run.id)).scalar_subquery()  # in the newest partition
        newest = Run.id == latest
        selection = dataclasses.replace(plan.selections[0], eligible=~newest, beyond_age=~newest)
        oldest = next(p for p in list_partitions(conn) if p.upper and p.upper <= selection.cutoff)
        in_it = (Run.started_at >= oldest.lower) & (Run.started_at < oldest.upper)
        rows = session.scalar(select(func.count()).where(in_it))
        # Narrowed to the partition, the subquery would find that partition's newest run.
        assert partitions._counts(conn, selection, oldest) == (rows, rows)


def test_a_preview_keeps_the_partitions_still_while_it_counts(
    pg: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the list of partitions and their counts, no partition is dropped or created
    (which would fail a count, or move rows out of the default partition uncounted): the
    preview holds its lock on runs, so they wait for it or give way."""
    project = populated(pg, runs=600, days=200)
    stray_at = NOW - timedelta(days=6 * 365)
    _add_run(pg, project, stray_at, None)  # in the default partition
    cutoff = NOW - timedelta(days=90)
    with pg.connect() as conn:
        expected = conn.scalar(select(func.count()).select_from(Run).where(Run.started_at < cutoff))
    listed = partitions.list_partitions
    tried: list[str] = []

    def listing_then_racing(conn: object) -> list[object]:
        found = listed(conn)  # type: ignore[arg-type]
        if not tried:
            victim = next(p for p in found if not p.is_default)
            with pytest.raises(OperationalError), pg.begin() as other:
                other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                forget_keys(other, victim)
                detach_and_drop(other, victim)
            tried.append(victim.name)
            # Creating the stray run's partition (which would take it out of the default one)
            # gives way too.
            assert ensure_partitions(pg, "month", cover=(stray_at, stray_at)) == []
        return found

    monkeypatch.setattr(partitions, "list_partitions", listing_then_racing)
    previewed, _ = run_policy(pg, _policy(extra="archive = false"), tmp_path / "a", now=NOW)
    assert tried
    assert previewed.rules[0].matched == expected


def test_without_archive_the_partitions_go_and_nothing_is_written(
    pg: Engine, tmp_path: Path
) -> None:
    populated(pg, runs=1000, days=200)
    policy = _policy(extra="archive = false")
    _, report = run_policy(pg, policy, tmp_path / "archives", now=NOW)
    assert report.outcome == "ok"
    assert report.rules[0].partitions
    assert _run_ids(pg, Run.started_at < NOW - timedelta(days=90)) == set()
    assert not list((tmp_path / "archives").rglob("*.jsonl.gz"))


def _owner_project(engine: Engine) -> uuid.UUID:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        project = Project(name="keys", owner=User(email="k@example.com", password_hash="x"))
        session.add(project)
    return project.id


def _add_run(engine: Engine, project: uuid.UUID, started: datetime, key: str | None) -> int:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        run = Run(
            project_id=project,
            task="t",
            run_id=uuid.uuid4().hex,
            status="completed",
            started_at=started,
            idempotency_key=key,
        )
        session.add(run)
    return run.id


def test_an_idempotency_key_is_unique_across_partitions(pg: Engine, tmp_path: Path) -> None:
    project = _owner_project(pg)
    ensure_partitions(pg, "month", cover=(NOW - timedelta(days=400), NOW))
    first = _add_run(pg, project, NOW - timedelta(days=300), "key-1")
    with pytest.raises(IntegrityError):
        _add_run(pg, project, NOW - timedelta(days=1), "key-1")
    other = _owner_project_named(pg, "other")
    _add_run(pg, other, NOW - timedelta(days=1), "key-1")  # another project's key
    # Changing a key moves it; deleting the run frees it.
    with for_writing(pg).begin() as conn:
        conn.execute(update(Run).where(Run.id == first).values(idempotency_key="key-2"))
    _add_run(pg, project, NOW - timedelta(days=2), "key-1")
    with pytest.raises(IntegrityError):
        _add_run(pg, project, NOW - timedelta(days=3), "key-2")
    # A dropped partition takes its keys with it.
    _, report = run_policy(pg, _policy("200d"), tmp_path / "archives", now=NOW)
    assert report.rules[0].partitions
    _add_run(pg, project, NOW - timedelta(days=3), "key-2")
    with pg.connect() as conn:
        keys = conn.execute(text(f"SELECT count(*) FROM {KEYS_TABLE}")).scalar()
        with_keys = conn.scalar(select(func.count()).where(Run.idempotency_key.is_not(None)))
    assert keys == with_keys == 3


def _owner_project_named(engine: Engine, name: str) -> uuid.UUID:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        owner = session.scalar(select(User).limit(1))
        project = Project(name=name, owner=owner)
        session.add(project)
    return project.id


def test_rows_in_the_default_partition_move_to_a_new_one(pg: Engine) -> None:
    project = _owner_project(pg)
    far = datetime(2031, 5, 17, tzinfo=UTC)
    run = _add_run(pg, project, far, "far")
    with pg.connect() as conn:
        where = conn.execute(
            text("SELECT tableoid::regclass::text FROM runs WHERE id = :i"), {"i": run}
        ).scalar()
    assert where == DEFAULT_PARTITION
    created = ensure_partitions(pg, "month", now=NOW)
    assert "runs_p20310501" in created
    with pg.connect() as conn:
        where = conn.execute(
            text("SELECT tableoid::regclass::text FROM runs WHERE id = :i"), {"i": run}
        ).scalar()
        assert conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar() == 0
    assert where == "runs_p20310501"
    with pytest.raises(IntegrityError):  # its key went nowhere
        _add_run(pg, project, NOW, "far")


def test_partitions_of_another_period_never_overlap(pg: Engine) -> None:
    ensure_partitions(pg, "month", now=NOW)
    created = ensure_partitions(pg, "day", now=datetime(2027, 6, 30, 12, tzinfo=UTC), ahead=2)
    assert created == ["runs_p20270630", "runs_p20270701", "runs_p20270702"]
    with pg.connect() as conn:
        ranges = [(p.lower, p.upper) for p in list_partitions(conn) if not p.is_default]
    for (_, upper), (lower, _) in itertools.pairwise(ranges):
        assert upper is not None and lower is not None and upper <= lower


def test_the_server_creates_the_partitions_ahead(pg: Engine, settings: Settings) -> None:
    with pg.begin() as conn:
        ahead = [p for p in list_partitions(conn) if not p.is_default][-1]
        conn.execute(text(f"DROP TABLE {ahead.name}"))
    app = create_app(settings, engine=pg)

    def created() -> bool:
        with pg.connect() as conn:
            return ahead.name in {p.name for p in list_partitions(conn)}

    with TestClient(app):
        wait_until(created, "the server to create the partition again")


def test_a_drop_that_cannot_get_its_lock_gives_way_to_batches(
    pg: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holding runs through every attempt at the DETACH: the partition's transaction
    is rolled back and its rows go in batches; nothing is lost, the archive holds them all."""
    populated(pg, runs=1000, days=200)
    original = table_hashes(pg)
    cutoff = NOW - timedelta(days=90)
    old = _run_ids(pg, Run.started_at < cutoff)
    monkeypatch.setattr(partitions, "DETACH_ATTEMPTS", 3)
    with pg.connect() as reader, reader.begin():
        reader.execute(select(func.count()).select_from(Run))  # holds a lock on runs
        _, report = run_policy(pg, _policy(), tmp_path / "archives", now=NOW)
    assert report.outcome == "ok"
    assert report.rules[0].partitions == []
    assert report.rules[0].affected == len(old)
    assert _run_ids(pg, Run.started_at < cutoff) == set()
    assert set(_archived_run_keys(tmp_path / "archives")) == old
    for archive in list_archives(str(tmp_path / "archives")):
        restore(pg, archive.uri, actor="test", trigger="cli")
    assert table_hashes(pg) == original


def test_a_partition_that_would_outgrow_the_plan_stays_whole(pg: Engine, tmp_path: Path) -> None:
    """The plan counted fewer rows than the partitions hold (rows came of age behind its
    back): partitions go whole while they fit in the 10 % over, and the one that would not fit
    is neither archived nor dropped."""
    populated(pg, runs=600, days=400)
    policy = parse_policy(
        '[[rule]]\nname = "r"\ntable = "runs"\nolder_than = "1h"\naction = "delete"\n',
        default_name="x",
    )
    plan = build_plan(policy, utcnow(), held=HeldSet(), project_ids={}, dialect="postgresql")
    before = _run_ids(pg)
    writer = ArchiveWriter(
        open_store(str(tmp_path)),
        run_id="overrun",
        started_at=plan.now,
        policy_name="x",
        policy_hash=None,
        schema_revision=None,
    )
    executor = Executor(pg, writer=writer, now=plan.now)
    with pytest.raises(PlanExceeded, match="more than 110 rows"):
        executor.run(plan, expected={"r": 100})
    outcome = executor.outcomes[0]
    assert 0 < outcome.affected <= 110 and outcome.partitions
    assert len(_run_ids(pg)) == len(before) - outcome.affected
    assert sum(part.rows for part in writer.manifest.files) == outcome.affected


def test_partitions_are_not_created_behind_a_long_reader(pg: Engine) -> None:
    """A reader of runs (an export, say) holds its lock: creating a partition gives up after a
    moment instead of making every query of runs queue behind it, and succeeds later."""
    with pg.begin() as conn:
        ahead = [p for p in list_partitions(conn) if not p.is_default][-1]
        conn.execute(text(f"DROP TABLE {ahead.name}"))
    with pg.connect() as reader, reader.begin():
        reader.execute(select(func.count()).select_from(Run))
        assert ensure_partitions(pg, "month") == []
    assert ensure_partitions(pg, "month") == [ahead.name]
