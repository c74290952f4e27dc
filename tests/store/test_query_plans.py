"""The run list's keyset query walks the index on both backends: no sort over the table."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, select, text
from sqlalchemy.orm import Session

from taskledger.schemas.runs import RunFilters
from taskledger.services.generate import generate
from taskledger.services.pagination import apply_keyset, encode_cursor, fingerprint
from taskledger.services.runs import RUNS_KEYSET, filter_conditions, filter_fingerprint_source
from taskledger.store.models import Project, Run, User


def _plan(engine: Engine, stmt) -> str:  # type: ignore[no-untyped-def]
    compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE runs"))
        rows = conn.execute(text(prefix + str(compiled))).all()
    return "\n".join(" ".join(str(c) for c in row) for row in rows)


def test_deep_page_uses_the_index(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        owner = User(email="o@example.com", password_hash="x")
        project = Project(name="p", owner=owner)
        other = Project(name="q", owner=owner)
        session.add_all([project, other])
    generate(engine, project.id, runs=20_000, days=30, agents=2, seed=1)
    generate(engine, other.id, runs=20_000, days=30, agents=2, seed=2)
    filters = RunFilters()
    fp = fingerprint(
        RUNS_KEYSET, {"project": str(project.id), **filter_fingerprint_source(filters)}
    )
    cursor = encode_cursor(RUNS_KEYSET, [datetime(2100, 1, 1, tzinfo=UTC), 10], fp)
    stmt = apply_keyset(
        select(Run).where(and_(*filter_conditions(project.id, filters))),
        RUNS_KEYSET,
        cursor=cursor,
        fp=fp,
        limit=50,
    )
    plan = _plan(engine, stmt)
    if engine.dialect.name == "sqlite":
        assert "ix_runs_project_id_started_at_desc_id_desc" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        # runs is partitioned: each partition's copy of the index, merged in order.
        assert "project_id_started_at_id_idx" in plan, plan
        assert not re.search(r"\bSort  \(cost", plan), plan  # a Sort node, not a Sort Key
        assert "Seq Scan" not in plan, plan
