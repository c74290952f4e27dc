"""The conflicts a restore reports are bounded: every one is counted, the first 20 per table are
named, the summary line names three; a dry run reports the same."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import Engine, insert, select

from taskledger.retention.archive.reader import ArchiveReader
from taskledger.retention.policy.load import parse_policy
from taskledger.retention.restore.report import (
    DIFFERENT_ROW,
    SHOWN_PER_TABLE,
    Conflict,
    RestoreReport,
    TableCounts,
)
from taskledger.retention.restore.restore import restore
from taskledger.store.models import Run
from tests.retention.engine_helpers import populated, run_policy

DELETE_RUNS = '[[rule]]\nname = "r"\ntable = "runs"\nolder_than = "90d"\naction = "delete"\n'


def test_many_conflicts_are_counted_and_a_bounded_number_named(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = populated(engine, runs=300, days=400)
    _, report = run_policy(engine, parse_policy(DELETE_RUNS, default_name="x"), tmp_path / "a")
    uri = report.archive_uri
    assert uri
    with ArchiveReader(uri) as reader:
        deleted = sorted(r["id"] for part in reader.manifest.files for r in reader.iter_rows(part))
    taken = deleted[:25]
    with engine.begin() as conn:  # different rows take 25 of the deleted runs' keys
        conn.execute(
            insert(Run),
            [
                {
                    "id": key,
                    "project_id": project_id,
                    "task": "t",
                    "run_id": "x",
                    "status": "queued",
                }
                for key in taken
            ],
        )

    for dry_run in (True, False):
        restored = restore(engine, uri, actor="test", trigger="cli", dry_run=dry_run)
        runs = restored.tables["runs"]
        assert runs.conflicts == 25 and runs.inserted == len(deleted) - 25
        assert len(runs.conflicted) == SHOWN_PER_TABLE
        # The first conflicts met, in archive order (a partition dropped whole on PostgreSQL
        # is archived in its own order, not by key).
        named = [c.key["id"] for c in runs.conflicted]
        assert len(set(named)) == SHOWN_PER_TABLE and set(named) <= set(taken)
        if engine.dialect.name == "sqlite":
            assert named == taken[:SHOWN_PER_TABLE]
        assert {c.reason for c in runs.conflicted} == {DIFFERENT_ROW}
        shown = ", ".join(f"runs {key} ({DIFFERENT_ROW})" for key in named[:3])
        assert f"25 conflicts: {shown} and 22 more; " in restored.summary()
        as_json = restored.to_dict()
        assert len(as_json["tables"]["runs"]["conflicted"]) == SHOWN_PER_TABLE
        assert len(json.dumps(as_json)) < 10_000
    with engine.connect() as conn:
        assert set(conn.scalars(select(Run.task).where(Run.id.in_(taken)))) == {"t"}


def test_a_composite_key_is_named_column_by_column() -> None:
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    counts = TableCounts()
    counts.conflict(Conflict({"task_id": first, "depends_on_id": second}, "why"))
    report = RestoreReport("uri", "run", 7, False, "ok", {"task_dependencies": counts})
    assert (
        f"1 conflict: task_dependencies task_id={first}, depends_on_id={second} (why)"
        in report.summary()
    )
    assert report.to_dict()["tables"]["task_dependencies"]["conflicted"] == [
        {
            "key": {"task_id": str(first), "depends_on_id": str(second)},
            "reason": "why",
            "columns": [],
        }
    ]
