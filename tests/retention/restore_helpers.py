"""Shared set-up for restore tests: a policy that deletes, scrubs and expires, a row-level hash
of the database, and a copy of one database into another (for cross-backend restores)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from sqlalchemy import Engine, insert, select

from taskledger.retention.archive.format import encode_row
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.deletes import DeleteReport, delete_records
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.policy.rules import Policy
from taskledger.retention.safeguards.alerts import Alerter
from taskledger.retention.safeguards.guard import SpikeGuard
from taskledger.store import make_session_factory
from taskledger.store.models import Base

#: Every action on every kind of table: deletes with cascades and unlinks (tasks, sessions),
#: scrubs (runs, instructions), expiries (connections, instructions).
MIXED_POLICY = """
name = "mixed"
[[rule]]
name = "old-tasks"
table = "tasks"
older_than = "60d"
status = ["completed", "failed", "cancelled"]
action = "delete"
[[rule]]
name = "old-runs"
table = "runs"
older_than = "90d"
action = "delete"
[[rule]]
name = "scrub-runs"
table = "runs"
older_than = "30d"
action = "scrub"
[[rule]]
name = "stale-connections"
table = "agent_connections"
older_than = "24h"
status = ["active"]
action = "expire"
[[rule]]
name = "old-sessions"
table = "agent_sessions"
older_than = "60d"
status = ["completed", "terminated", "error"]
action = "delete"
[[rule]]
name = "expire-instructions"
table = "instructions"
older_than = "2d"
status = ["pending", "sent"]
action = "expire"
[[rule]]
name = "scrub-instructions"
table = "instructions"
older_than = "30d"
action = "scrub"
"""

#: Tables retention and restore never write (the audit log and the engine's own state).
BOOKKEEPING = {
    "retention_runs",
    "retention_holds",
    "retention_leases",
    "retention_schedule",
    "deletion_events",
}


def mixed_policy() -> Policy:
    return parse_policy(MIXED_POLICY, default_name="mixed")


def data_tables() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables if t.name not in BOOKKEEPING]


def table_hashes(engine: Engine, *, key_order: bool = True) -> dict[str, tuple[int, str]]:
    """Per table, the row count and a SHA-256 of every row, as the archive encodes rows.

    The archive keeps the key order of JSON values as the database gives it, so the hash tells
    apart JSON objects whose keys are in another order. PostgreSQL's jsonb has an order of its
    own: to compare a SQLite database with a PostgreSQL one, ``key_order=False`` sorts the keys
    of JSON values first (the same values then give the same hash on both)."""
    out = {}
    with engine.connect() as conn:
        for name in data_tables():
            table = Base.metadata.tables[name]
            rows = conn.execute(select(table)).mappings()
            lines = sorted(
                encode_row(row) if key_order else _sorted_json_line(encode_row(row)) for row in rows
            )
            out[name] = (len(lines), hashlib.sha256(b"".join(lines)).hexdigest())
    return out


def _sorted_json_line(line: bytes) -> bytes:
    return json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")).encode() + b"\n"


def copy_database(source: Engine, target: Engine) -> None:
    """Copy every data table of ``source`` into the empty ``target``, parents first."""
    with source.connect() as src, target.begin() as dst:
        for name in data_tables():
            table = Base.metadata.tables[name]
            rows = [dict(row) for row in src.execute(select(table)).mappings()]
            if rows:
                dst.execute(insert(table), rows)


def archive_root(tmp_path: Path) -> Path:
    return tmp_path / "archives"


def delete_agent(engine: Engine, agent_id: uuid.UUID, tmp_path: Path) -> DeleteReport:
    """Delete an agent as ``DELETE /api/v1/agents/{id}`` does: archived, audited, guarded."""
    guard = SpikeGuard(
        engine=engine,
        max_rows=10,
        window_seconds=60,
        alerter=Alerter(webhook_url=None, metrics=None),
    )
    return delete_records(
        engine,
        make_session_factory(engine),
        table="agents",
        keys=[agent_id],
        actor="test",
        guard=guard,
        target=ArchiveTarget(str(tmp_path / "archives")),
    )
