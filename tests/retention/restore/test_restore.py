"""Restore on real data: after an execution that deletes, scrubs and expires, restore gives back
every row exactly; it is idempotent, parents come before children, one table can be restored
alone, a dry run writes nothing, orphans are counted, damaged archives change nothing."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from taskledger.retention.archive.reader import ArchiveReader, verify
from taskledger.retention.archive.stores import ArchiveCorrupt
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.restore.judge import RESTORABLE, UnknownTable
from taskledger.retention.restore.report import RestoreReport
from taskledger.retention.restore.restore import restore
from taskledger.store.models import Agent, ApiKey, RetentionRun, Run, Task
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import delete_agent, mixed_policy, table_hashes


def _restore(engine: Engine, uri: str, **kwargs: Any) -> RestoreReport:
    return restore(engine, uri, actor="test", trigger="cli", **kwargs)


def _archived(uri: str) -> int:
    with ArchiveReader(uri) as reader:
        return sum(part.rows for part in reader.manifest.files)


@pytest.fixture
def retained(engine: Engine, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """A populated database, its hashes before, and the archive of the mixed policy's run."""
    populated(engine, runs=1200, days=400)
    before = table_hashes(engine)
    previewed, report = run_policy(engine, mixed_policy(), tmp_path / "archives")
    assert report.outcome == "ok" and report.archive_uri
    assert {r.name for r in previewed.rules if r.matched} == {r.name for r in previewed.rules}
    assert table_hashes(engine) != before
    return before, report.archive_uri


def test_restore_gives_back_every_row_and_is_idempotent(
    engine: Engine, retained: tuple[dict[str, Any], str]
) -> None:
    before, uri = retained
    report = _restore(engine, uri)
    assert table_hashes(engine) == before
    assert report.outcome == "ok" and report.inserted > 0 and report.restored > 0
    assert report.orphaned == 0 and report.total().conflicts == 0
    counted = report.inserted + report.restored + report.skipped + report.orphaned
    assert counted == _archived(uri)
    assert set(report.to_dict()) >= {"inserted", "skipped", "restored", "orphaned", "tables"}

    again = _restore(engine, uri)
    assert (again.inserted, again.restored, again.total().conflicts) == (0, 0, 0)
    assert again.skipped == _archived(uri)
    assert table_hashes(engine) == before

    # Explicit ids went in: new rows must still get fresh ones (PostgreSQL sequences).
    with Session(engine) as session, session.begin():
        project_id = session.scalar(select(Run.project_id).limit(1))
        session.add(Run(project_id=project_id, task="after", run_id="r", status="queued"))
    with Session(engine) as session:
        audit = session.scalars(
            select(RetentionRun).where(RetentionRun.mode == "restore").order_by(RetentionRun.id)
        ).all()
    assert [(a.outcome, a.trigger, a.actor) for a in audit] == [("ok", "cli", "test")] * 2
    assert audit[0].archive_uri == uri and audit[0].counts["inserted"] == report.inserted
    assert audit[0].finished_at is not None


def test_dry_run_counts_and_writes_nothing(
    engine: Engine, retained: tuple[dict[str, Any], str]
) -> None:
    before, uri = retained
    after_retention = table_hashes(engine)
    dry = _restore(engine, uri, dry_run=True)
    assert table_hashes(engine) == after_retention
    assert dry.dry_run and dry.outcome == "dry-run"
    real = _restore(engine, uri)
    assert table_hashes(engine) == before
    assert dry.inserted == real.inserted and dry.orphaned == real.orphaned
    # A run unlinked from a deleted task and then deleted itself is in two parts: the dry run
    # cannot relink a row it did not insert, so it counts that part skipped.
    assert dry.restored + dry.skipped == real.restored + real.skipped


def test_one_table_only(engine: Engine, retained: tuple[dict[str, Any], str]) -> None:
    before, uri = retained
    after_retention = table_hashes(engine)
    report = _restore(engine, uri, tables=["runs"])
    assert list(report.tables) == ["runs"] and report.inserted > 0
    now = table_hashes(engine)
    assert {t for t in now if now[t] != after_retention[t]} == {"runs"}
    assert now["runs"][0] == before["runs"][0]
    _restore(engine, uri)
    assert table_hashes(engine) == before


def test_unknown_table_is_refused_naming_the_valid_ones(
    engine: Engine, retained: tuple[dict[str, Any], str]
) -> None:
    _, uri = retained
    with pytest.raises(UnknownTable) as caught:
        _restore(engine, uri, tables=["users"])
    assert "users" in str(caught.value) and all(t in str(caught.value) for t in RESTORABLE)


def test_parents_before_children(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=200, days=400)
    before = table_hashes(engine)
    policy = parse_policy(
        'name = "instructions"\n[[rule]]\nname = "old"\ntable = "instructions"\n'
        'older_than = "7d"\naction = "delete"\nallow_audit_deletion = true\n',
        default_name="x",
    )
    _, report = run_policy(engine, policy, tmp_path)
    assert report.rules[0].cascaded.get("acknowledgements")
    uri = report.archive_uri
    assert uri is not None
    with ArchiveReader(uri) as reader:
        tables = [part.table for part in reader.manifest.files]
    # The executor writes cascaded children first: manifest order would insert them too early.
    assert tables.index("acknowledgements") < tables.index("instructions")

    alone = _restore(engine, uri, tables=["acknowledgements"])
    assert alone.inserted == 0 and alone.orphaned == report.rules[0].cascaded["acknowledgements"]

    full = _restore(engine, uri)
    assert full.tables["acknowledgements"].inserted == report.rules[0].cascaded["acknowledgements"]
    assert list(full.tables) == ["instructions", "acknowledgements"]
    assert full.orphaned == 0 and table_hashes(engine) == before


def test_missing_parents_orphan_or_unattach(
    engine: Engine, retained: tuple[dict[str, Any], str]
) -> None:
    _, uri = retained
    with ArchiveReader(uri) as reader:
        sessions = [
            row
            for part in reader.manifest.files
            if part.table == "agent_sessions"
            for row in reader.iter_rows(part)
        ]
        runs = [
            row
            for part in reader.manifest.files
            if part.table == "runs" and part.action == "delete"
            for row in reader.iter_rows(part)
        ]
    agent = sessions[0]["agent_id"]  # as archived: text
    orphans = sum(1 for row in sessions if row["agent_id"] == agent)
    detached = sum(1 for row in runs if row["agent_id"] == agent)
    assert detached > 0
    # The agent goes: its sessions and connections with it; runs keep their history, unattributed.
    with Session(engine) as session, session.begin():
        session.execute(delete(Agent).where(Agent.id == uuid.UUID(agent)))
    report = _restore(engine, uri)
    assert report.tables["agent_sessions"].orphaned == orphans
    assert report.total().unattached >= detached
    with Session(engine) as session:
        back = session.scalar(
            select(func.count()).select_from(Run).where(Run.id.in_([r["id"] for r in runs]))
        )
    assert back == len(runs)
    again = _restore(engine, uri)
    assert again.inserted == 0 and again.orphaned == report.orphaned


def _part_path(uri: str, table: str) -> Path:
    return next(Path(uri).glob(f"{table}-*.jsonl.gz"))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _miscount(path: Path) -> None:
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(f for f in manifest["files"] if f["name"] == path.name)
    entry["rows"] += 1
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_flip, _truncate, _miscount], ids=["flip", "truncate", "count"])
def test_damaged_archive_changes_nothing(
    engine: Engine, retained: tuple[dict[str, Any], str], damage: Any
) -> None:
    _, uri = retained
    path = _part_path(uri, "runs")
    with gzip.open(path) as fh:
        assert fh.readline()  # a real part before the damage
    damage(path)
    assert not verify(uri).ok
    after_retention = table_hashes(engine)
    with pytest.raises(ArchiveCorrupt, match=path.name):
        _restore(engine, uri)
    assert table_hashes(engine) == after_retention
    with Session(engine) as session:
        audit = session.scalars(select(RetentionRun).where(RetentionRun.mode == "restore")).one()
    assert audit.outcome == "failed" and path.name in (audit.error or "")
    assert audit.finished_at is not None and audit.finished_at <= utcnow()


def test_a_deleted_agent_comes_back_with_everything_it_took(engine: Engine, tmp_path: Path) -> None:
    populated(engine, runs=600, days=100, agents=3)
    with Session(engine) as session, session.begin():
        agent = session.scalars(select(Agent).order_by(Agent.name)).first()
        assert agent is not None
        session.add(
            ApiKey(
                project_id=agent.project_id,
                agent_id=agent.id,
                name="bound",
                prefix=uuid.uuid4().hex[:12],
                key_hash="not-a-real-hash",
                scopes=["read"],
            )
        )
        task = session.scalars(select(Task).limit(1)).one()
        task.assigned_to, task.assigned_to_type = agent.id, "agent"
        agent_id = agent.id
    before = table_hashes(engine)
    keys_before = _key_rows(engine)
    deleted = delete_agent(engine, agent_id, tmp_path)
    assert deleted.deleted == 1 and deleted.archive_uri
    after = table_hashes(engine)
    for table in ("agents", "api_keys", "agent_sessions", "agent_connections", "runs", "tasks"):
        assert after[table] != before[table], table
    started = utcnow()
    report = _restore(engine, deleted.archive_uri)
    assert report.orphaned == 0 and report.total().conflicts == 0
    # Every row is back as it was, but the agent's key, which comes back revoked.
    restored = table_hashes(engine)
    assert {t: h for t, h in restored.items() if t != "api_keys"} == {
        t: h for t, h in before.items() if t != "api_keys"
    }
    [bound] = [key for key in keys_before if key["agent_id"] == agent_id]
    assert report.tables["api_keys"].revoked == 1
    assert report.tables["api_keys"].revoked_keys == [str(bound["id"])]
    keys_after = {key["id"]: key for key in _key_rows(engine)}
    assert keys_after.keys() == {key["id"] for key in keys_before}
    for key in keys_before:
        back = keys_after[key["id"]]
        if key["id"] == bound["id"]:
            assert key["revoked_at"] is None and started <= back["revoked_at"] <= utcnow()
            assert {**back, "revoked_at": None} == key
        else:
            assert back == key


def _key_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(ApiKey.__table__)).mappings()]


def test_a_name_taken_meanwhile_is_a_conflict_and_its_children_orphans(
    engine: Engine, tmp_path: Path
) -> None:
    populated(engine, runs=100, days=100, agents=2)
    with Session(engine) as session:
        agent = session.scalars(select(Agent).order_by(Agent.name)).first()
        assert agent is not None
        agent_id, project_id, name = agent.id, agent.project_id, agent.name
    deleted = delete_agent(engine, agent_id, tmp_path)
    with Session(engine) as session, session.begin():
        session.add(Agent(project_id=project_id, name=name))  # the name is taken again
    report = _restore(engine, deleted.archive_uri or "")
    agents = report.tables["agents"]
    assert (agents.inserted, agents.conflicts) == (0, 1)
    assert report.tables["agent_sessions"].orphaned > 0
    with Session(engine) as session:
        assert session.get(Agent, agent_id) is None
