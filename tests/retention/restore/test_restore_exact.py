"""Restore is exact: every JSON field comes back as it was stored, compared as the database's own
text of the column (``CAST(col AS TEXT)``: SQLite's stored JSON text, PostgreSQL's jsonb text),
through every action (scrub, delete, expire, the cascades and unlinks of a delete) and both
archive renderings (lines the database renders, rows encoded in Python)."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Engine, text
from sqlalchemy.orm import Session

from taskledger.retention.archive.format import rows_of
from taskledger.retention.archive.reader import ArchiveReader
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.restore.restore import restore
from taskledger.store.models import (
    Acknowledgement,
    Agent,
    AgentConnection,
    AgentSession,
    ApiKey,
    Base,
    Instruction,
    Project,
    Run,
    Task,
    User,
)
from taskledger.store.types import utcnow
from tests.retention.engine_helpers import run_policy
from tests.retention.restore_helpers import data_tables, delete_agent

OLD = utcnow() - timedelta(days=400)


def _awkward(tag: str) -> Any:
    """JSON whose stored text a re-encoding would change: keys in no sorted order at every
    level, characters beyond ASCII (and beyond the BMP), nested arrays, numbers of every kind."""
    return {
        "zeta": {"y": [3, {"q": "é ☃ \U0001f600", "b": None}], "b": tag},
        "alpha": [[1, [2.5, "ü", True]], {"m": False, "c": -7}],
        "mid": 'naïve\n"quoted"',
        "big": 12345678901234567890,
        "tiny": 1e-07,
    }


def _json_columns() -> dict[str, list[str]]:
    """Every JSON column of every data table, by table."""
    out: dict[str, list[str]] = {}
    for name in data_tables():
        table = Base.metadata.tables[name]
        columns = [c.name for c in table.columns if isinstance(c.type, JSON)]
        if columns:
            out[name] = columns
    return out


def stored_json_text(engine: Engine) -> dict[tuple[str, str, str], str | None]:
    """Every JSON value of every row as the database's text of it, by (table, key, column)."""
    out: dict[tuple[str, str, str], str | None] = {}
    with engine.connect() as conn:
        for name, columns in _json_columns().items():
            table = Base.metadata.tables[name]
            keys = [c.name for c in table.primary_key.columns]
            key_sql = " || '/' || ".join(f'CAST("{k}" AS TEXT)' for k in keys)
            values = ", ".join(f'CAST("{c}" AS TEXT)' for c in columns)
            rows = conn.execute(text(f'SELECT {key_sql}, {values} FROM "{name}"'))
            for key, *texts in rows:
                for column, stored in zip(columns, texts, strict=True):
                    out[(name, key, column)] = stored
    return out


def _world(engine: Engine) -> uuid.UUID:
    """One old row of every table with JSON columns, each holding awkward JSON; the agent's id."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        owner = User(email=f"o-{uuid.uuid4().hex[:6]}@example.com", password_hash="x")
        project = Project(name=f"p-{uuid.uuid4().hex[:8]}", owner=owner)
        session.add_all([owner, project])
        session.flush()
        agent = Agent(
            project_id=project.id,
            name="exact",
            capabilities=["z", {"k": "é", "a": 1}],
            config=_awkward("config"),
            created_at=OLD,
            updated_at=OLD,
        )
        session.add(agent)
        session.flush()
        common = {"project_id": project.id, "created_at": OLD, "updated_at": OLD}
        agent_session = AgentSession(
            agent_id=agent.id,
            status="completed",
            experimental_parameters=_awkward("session"),
            ended_at=OLD,
            **common,
        )
        session.add(agent_session)
        session.flush()
        instructions = [
            Instruction(
                agent_id=agent.id,
                session_id=agent_session.id,
                payload=_awkward(f"instruction-{status}"),
                metadata_={"z": 1, "a": [{"y": 2, "x": 1}]},
                status=status,
                **common,
            )
            for status in ("completed", "pending")
        ]
        task = Task(
            title="t",
            status="completed",
            completed_at=OLD,
            result=_awkward("task"),
            **common,
        )
        session.add_all([*instructions, task])
        session.flush()
        session.add_all(
            [
                Acknowledgement(
                    project_id=project.id,
                    instruction_id=instructions[0].id,
                    agent_id=agent.id,
                    status="completed",
                    created_at=OLD,
                ),
                Run(
                    agent_id=agent.id,
                    task_id=task.id,
                    task="t",
                    run_id="exact",
                    status="completed",
                    started_at=OLD,
                    inputs=_awkward("run"),
                    log_excerpt="log",
                    **common,
                ),
                AgentConnection(
                    agent_id=agent.id,
                    session_id=agent_session.id,
                    status="active",
                    last_heartbeat_at=OLD,
                    **common,
                ),
                ApiKey(
                    project_id=project.id,
                    agent_id=agent.id,
                    name="k",
                    prefix=uuid.uuid4().hex[:12],
                    key_hash="not-a-real-hash",
                    scopes=["write", "read"],
                    created_at=OLD,
                    updated_at=OLD,
                ),
            ]
        )
        return agent.id


def _rule(table: str, action: str, extra: str = "") -> str:
    return (
        f'[[rule]]\nname = "{table}-{action}"\ntable = "{table}"\nolder_than = "30d"\n'
        f'action = "{action}"\n{extra}'
    )


CASES = {
    "scrub sessions": _rule("agent_sessions", "scrub"),
    "delete sessions": _rule("agent_sessions", "delete"),
    "scrub instructions": _rule("instructions", "scrub"),
    "delete instructions": _rule("instructions", "delete", "allow_audit_deletion = true\n"),
    "expire instructions": _rule("instructions", "expire", 'status = ["pending"]\n'),
    "scrub runs": _rule("runs", "scrub"),
    "delete runs": _rule("runs", "delete"),
    "delete tasks": _rule("tasks", "delete"),
}


def _assert_exact(
    before: dict[tuple[str, str, str], str | None], after: dict[tuple[str, str, str], str | None]
) -> None:
    assert after.keys() == before.keys()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, changed


@pytest.mark.parametrize("policy", CASES.values(), ids=CASES.keys())
def test_every_json_field_comes_back_as_stored(engine: Engine, tmp_path: Path, policy: str) -> None:
    _world(engine)
    before = stored_json_text(engine)
    rule = parse_policy('name = "exact"\nmax_table_fraction = 1.0\n' + policy, default_name="x")
    _, report = run_policy(engine, rule, tmp_path / "archives")
    assert report.outcome == "ok" and report.archive_uri
    assert report.rules[0].affected > 0
    if "expire" not in policy:  # an expiry changes no JSON; the others take or replace it
        assert stored_json_text(engine) != before
    restore(engine, report.archive_uri, actor="test", trigger="cli")
    _assert_exact(before, stored_json_text(engine))


def test_a_deleted_agent_and_what_it_took_come_back_as_stored(
    engine: Engine, tmp_path: Path
) -> None:
    """The agent's own row (rendered by the database) and its cascaded sessions and keys
    (encoded in Python) alike."""
    agent_id = _world(engine)
    before = stored_json_text(engine)
    deleted = delete_agent(engine, agent_id, tmp_path)
    assert deleted.archive_uri
    with ArchiveReader(deleted.archive_uri) as reader:
        tables = {part.table for part in reader.manifest.files}
    assert {"agents", "agent_sessions", "api_keys"} <= tables
    restore(engine, deleted.archive_uri, actor="test", trigger="cli")
    _assert_exact(before, stored_json_text(engine))


def _rewrite_with_sorted_keys(uri: str) -> None:
    """Make the archive at ``uri`` look as archives did before JSON kept its key order: every
    key of every line sorted, nested ones too (the manifest's sizes and checksums follow)."""
    manifest_path = Path(uri) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        path = Path(uri) / entry["name"]
        lines = [
            json.dumps(row, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"
            for row in rows_of(path.read_bytes())
        ]
        data = gzip.compress(b"".join(lines), mtime=0)
        path.write_bytes(data)
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def test_an_archive_with_sorted_keys_from_before_restores_the_same_values(
    engine: Engine, tmp_path: Path
) -> None:
    """Older archives sorted the keys of JSON values: they still restore, with the same values
    (on SQLite the JSON text then has its keys sorted; on PostgreSQL jsonb has its own order,
    so the restore is exact there)."""
    _world(engine)
    before = stored_json_text(engine)
    rule = parse_policy('name = "old"\n' + CASES["scrub sessions"], default_name="x")
    _, report = run_policy(engine, rule, tmp_path / "archives")
    assert report.archive_uri
    _rewrite_with_sorted_keys(report.archive_uri)
    restored = restore(engine, report.archive_uri, actor="test", trigger="cli")
    assert restored.restored == 1
    after = stored_json_text(engine)
    assert after.keys() == before.keys()
    assert {k: json.loads(v) if v else v for k, v in after.items()} == {
        k: json.loads(v) if v else v for k, v in before.items()
    }
    [(key, original)] = [(k, v) for k, v in before.items() if k[0] == "agent_sessions"]
    assert original is not None
    if engine.dialect.name == "sqlite":
        assert after[key] == json.dumps(json.loads(original), sort_keys=True) != original
    else:  # jsonb orders keys its own way: exact even from an older archive
        assert after[key] == original
