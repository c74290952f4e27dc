"""Keyset paging (SPEC section 10): a page at depth 900k costs at most 1.5x the first page.

The product's list service (``services.runs.list_runs``, what ``GET /api/v1/runs`` calls) is
timed directly, in its own session and transaction, so HTTP and JSON costs, which do not
depend on depth, do not dilute the ratio. The cursor for depth ``d`` is built from the keyset
boundary row, read with one SQL query, instead of paging ``d / limit`` times. The baseline is
the same ORM query paged with ``OFFSET d``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from benchlib import (
    Target,
    arguments,
    backends,
    best_of_each,
    console,
    fresh_database,
    ms,
    print_table,
    seed_runs,
    times,
)
from taskledger.schemas.runs import RunFilters
from taskledger.services.pagination import DEFAULT_LIMIT, encode_cursor, fingerprint
from taskledger.services.runs import RUNS_KEYSET, filter_fingerprint_source, list_runs
from taskledger.store import make_session_factory
from taskledger.store.models import Project, Run

TARGET = Target(1.5)  # deepest page / first page
REPEAT = 15
OFFSET_REPEAT = 5  # deep OFFSET pages are slow, and only reported


def cursor_at(session: Session, project: Project, filters: RunFilters, depth: int) -> str | None:
    """The cursor the list returns after ``depth`` rows: the keyset of row number ``depth``."""
    if depth == 0:
        return None
    order = [Run.started_at.desc(), Run.id.desc()]
    boundary = session.execute(
        select(Run.started_at, Run.id)
        .where(Run.project_id == project.id)
        .order_by(*order)
        .offset(depth - 1)
        .limit(1)
    ).one()
    fp = fingerprint(
        RUNS_KEYSET, {"project": str(project.id), **filter_fingerprint_source(filters)}
    )
    return encode_cursor(RUNS_KEYSET, list(boundary), fp)


def by_offset(project_id: uuid.UUID, depth: int, limit: int) -> Select[tuple[Run]]:
    """The baseline: the same listing, skipping ``depth`` rows with OFFSET."""
    return (
        select(Run)
        .where(Run.project_id == project_id)
        .order_by(Run.started_at.desc(), Run.id.desc())
        .offset(depth)
        .limit(limit)
    )


def measure(engine: Engine, project_id: uuid.UUID, depths: list[int]) -> list[list[Any]]:
    sessions = make_session_factory(engine)
    filters = RunFilters()
    with sessions() as session:
        project = session.get(Project, project_id)
        assert project is not None
        cursors = {d: cursor_at(session, project, filters, d) for d in depths}

    def keyset_page(depth: int) -> None:
        with sessions() as session, session.begin():
            rows, _ = list_runs(
                session=session,
                project=project,
                filters=filters,
                limit=DEFAULT_LIMIT,
                cursor=cursors[depth],
            )
            assert len(rows) == DEFAULT_LIMIT

    def offset_page(depth: int) -> None:
        with sessions() as session, session.begin():
            rows = list(session.scalars(by_offset(project_id, depth, DEFAULT_LIMIT)))
            assert len(rows) == DEFAULT_LIMIT

    # The first keyset page at depth d is the OFFSET page at depth d: check the cursor.
    with sessions() as session:
        for depth in depths:
            keyset_ids = [
                r.id
                for r in list_runs(
                    session=session,
                    project=project,
                    filters=filters,
                    limit=5,
                    cursor=cursors[depth],
                )[0]
            ]
            offset_ids = [r.id for r in session.scalars(by_offset(project_id, depth, 5))]
            assert keyset_ids == offset_ids, (depth, keyset_ids, offset_ids)

    keyset = best_of_each({d: lambda d=d: keyset_page(d) for d in depths}, repeat=REPEAT)
    offset = best_of_each({d: lambda d=d: offset_page(d) for d in depths}, repeat=OFFSET_REPEAT)
    first = keyset[depths[0]]
    rows = []
    for depth in depths:
        ratio = keyset[depth] / first
        offset_ratio = offset[depth] / first
        verdict = TARGET.verdict(ratio) if depth == depths[-1] else ""
        rows.append(
            [
                f"{depth:,}",
                ms(keyset[depth]),
                times(ratio),
                ms(offset[depth]),
                times(offset_ratio, 1),
                verdict,
            ]
        )
    return rows


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=1_000_000)
    depths = [0, args.rows // 10, args.rows * 9 // 10]
    for backend in backends(args.backend):
        console.print(f"[bold]{backend}[/]: {args.rows:,} runs, pages of {DEFAULT_LIMIT}")
        with fresh_database(backend) as engine:
            project_id = seed_runs(engine, args.rows)
            rows = measure(engine, project_id, depths)
        print_table(
            f"Keyset paging on {backend}, {args.rows:,} runs (best of {REPEAT})",
            ["depth", "keyset page", "÷ first page", "OFFSET page", "÷ first page", "target"],
            rows,
        )


if __name__ == "__main__":
    main()
