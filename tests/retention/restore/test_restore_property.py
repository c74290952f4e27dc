"""Property: for random data and a random policy, the preview's ``matched`` is what the execution
affects and what it archives, rule by rule; and restoring the archive gives back a database whose
every row equals the original."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from taskledger.retention.archive.reader import ArchiveReader
from taskledger.retention.policy.rules import Policy, Rule, validate_policy
from taskledger.retention.restore.restore import restore
from taskledger.store import Base
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import data_tables, table_hashes

AGES = [timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=90)]
TERMINAL = ["completed", "failed", "cancelled"]

# What each table can be asked to do, one rule per table so that no rule makes work for another
# during the run (the preview would then undercount). Instructions come before acknowledgements
# for the same reason: deleting acknowledgements first would make more instructions eligible.
CHOICES: dict[str, list[dict[str, Any]]] = {
    "tasks": [{"action": "delete", "statuses": tuple(TERMINAL)}],
    "runs": [
        {"action": "delete"},
        {"action": "delete", "statuses": ("failed",)},
        {"action": "scrub", "statuses": tuple(TERMINAL)},
    ],
    "agent_sessions": [
        {"action": "delete", "statuses": ("completed", "terminated", "error")},
        {"action": "scrub"},
    ],
    "agent_connections": [{"action": "expire", "statuses": ("active",)}, {"action": "delete"}],
    "instructions": [
        {"action": "expire", "statuses": ("pending", "sent")},
        {"action": "scrub"},
        {"action": "delete", "has_acknowledgements": False},
    ],
    "acknowledgements": [{"action": "delete", "allow_audit_deletion": True}],
}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = []
    for table, options in CHOICES.items():
        if not draw(st.booleans()):
            continue
        choice = draw(st.sampled_from(options))
        rules.append(
            Rule(
                name=f"{table}-{choice['action']}",
                table=table,
                older_than=draw(st.sampled_from(AGES)),
                **choice,
            )
        )
    batch = draw(st.sampled_from([7, 100, 1000]))
    return validate_policy(Policy(name="random", rules=tuple(rules), batch_size=batch))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=policies(),
    runs=st.integers(min_value=0, max_value=300),
    days=st.sampled_from([2, 30, 400]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_preview_execution_archive_and_restore_agree(
    engine: Engine, tmp_path: Path, policy: Policy, runs: int, days: int, seed: int
) -> None:
    # Hypothesis runs every example on the same database, and a repeated seed generates the
    # same ids: each example starts empty.
    with engine.begin() as conn:
        for name in reversed(data_tables()):
            conn.execute(Base.metadata.tables[name].delete())
    populated(engine, runs=runs, days=days, seed=seed, agents=2)
    original = table_hashes(engine)
    previewed, report = run_policy(engine, policy, tmp_path / uuid.uuid4().hex)
    archived: dict[str, int] = {}
    if report.archive_uri:
        with ArchiveReader(report.archive_uri) as reader:
            for part in reader.manifest.files:
                if part.action in ("delete", "scrub", "expire"):
                    archived[part.rule] = archived.get(part.rule, 0) + part.rows
    affected = {r.name: r.affected for r in report.rules}
    for rule in previewed.rules:
        assert rule.matched == affected[rule.name] == archived.get(rule.name, 0), rule.name
    if report.archive_uri:
        restored = restore(engine, report.archive_uri, actor="test", trigger="cli", batch_size=50)
        assert restored.orphaned == 0 and restored.total().conflicts == 0
    assert table_hashes(engine) == original
