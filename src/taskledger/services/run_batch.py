"""Bulk ingest: up to 1000 runs in one transaction, all or nothing, idempotent per item."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Table, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskledger.errors import ValidationFailed
from taskledger.schemas.runs import BatchItem, BatchResult, RunCreate
from taskledger.services.runs import check_references, run_values
from taskledger.store.models import Project, Run
from taskledger.store.types import utcnow

MAX_BATCH = 1000
_ITEMS = TypeAdapter(list[RunCreate])


#: Where the items of a batch are in its request body.
ITEMS_LOC = ("body", "runs")


def _validate(raw: list[Any]) -> list[RunCreate]:
    """Validate every item in one pass; a 422 lists each problem of each failing item, its
    ``loc`` starting ``body, runs, <index>``."""
    if len(raw) > MAX_BATCH:
        raise ValidationFailed(
            f"A batch holds at most {MAX_BATCH} runs; this one has {len(raw)}.", loc=ITEMS_LOC
        )
    try:
        return _ITEMS.validate_python(raw)
    except ValidationError as exc:
        raise ValidationFailed(
            [
                {"loc": [*ITEMS_LOC, *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(
                    include_url=False, include_context=False, include_input=False
                )
            ]
        ) from None


def ingest_batch(*, session: Session, project: Project, raw: list[Any]) -> BatchResult:
    """Record every run of ``raw`` in the caller's transaction, or none of them.

    Items carrying an idempotency key already recorded (earlier, or earlier in this batch) are
    not inserted again; the result points at the original run.
    """
    items = _validate(raw)
    errors: list[dict[str, Any]] = []
    agent_ids = {i.agent_id for i in items if i.agent_id}
    task_ids = {i.task_id for i in items if i.task_id}
    missing_agents, missing_tasks = check_references(
        session=session, project_id=project.id, agent_ids=agent_ids, task_ids=task_ids
    )
    for index, item in enumerate(items):
        problems = []
        if item.project_id is not None and item.project_id != project.id:
            problems.append(("project_id", "does not match the project of the credentials"))
        if item.agent_id in missing_agents:
            problems.append(("agent_id", f"{item.agent_id} is not an agent of this project"))
        if item.task_id in missing_tasks:
            problems.append(("task_id", f"{item.task_id} is not a task of this project"))
        if item.started_at and item.finished_at and item.finished_at < item.started_at:
            problems.append(("finished_at", "is before started_at"))
        errors.extend(
            {"loc": [*ITEMS_LOC, index, field], "msg": f"{field} {msg}", "type": "value_error"}
            for field, msg in problems
        )
    if errors:
        raise ValidationFailed(errors)
    try:
        with session.begin_nested():
            return _insert(session=session, project_id=project.id, items=items)
    except IntegrityError:
        # Another writer recorded some of the same idempotency keys meanwhile: look again.
        with session.begin_nested():
            return _insert(session=session, project_id=project.id, items=items)


def _known_keys(
    *, session: Session, project_id: uuid.UUID, keys: set[str]
) -> dict[str, tuple[int, str]]:
    """``(id, run_id)`` of the runs already recorded with one of ``keys``."""
    if not keys:
        return {}
    rows = session.execute(
        select(Run.idempotency_key, Run.id, Run.run_id).where(
            Run.project_id == project_id, Run.idempotency_key.in_(keys)
        )
    )
    return {key: (run_pk, run_id) for key, run_pk, run_id in rows if key is not None}


# Ids for a whole batch in one round trip. Values from one sequence call are increasing; they
# are sorted anyway, so that ids follow the order of the items as with RETURNING.
_PREALLOCATE_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('runs', 'id')) FROM generate_series(1, :n)"
)


def _insert_rows(*, session: Session, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Insert ``rows`` (every column given); returns ``(id, run_id)`` of each, in order.

    A Core insert of the table, not the ORM bulk path: the ORM leaves out NULL values and so
    splits a batch into one statement per run of rows with the same NULL columns, hundreds of
    round trips per batch.
    """
    if not rows:
        return []
    table: Table = Run.__table__  # type: ignore[assignment]
    if session.get_bind().dialect.name == "postgresql":
        # One multi-row INSERT ... RETURNING of 1000 rows carries 18,000 parameters, which the
        # driver re-parses on every call. Taking the ids first lets the rows go as a plain
        # executemany, which psycopg pipelines with one prepared statement.
        ids = sorted(session.scalars(_PREALLOCATE_IDS, {"n": len(rows)}))
        for row, run_pk in zip(rows, ids, strict=True):
            row["id"] = run_pk
        session.execute(insert(table), rows)
        return [(row["id"], row["run_id"]) for row in rows]
    result = session.execute(
        insert(table).returning(table.c.id, table.c.run_id, sort_by_parameter_order=True), rows
    )
    return [(run_pk, run_id) for run_pk, run_id in result]


def _insert(*, session: Session, project_id: uuid.UUID, items: list[RunCreate]) -> BatchResult:
    keys = {i.idempotency_key for i in items if i.idempotency_key}
    known = _known_keys(session=session, project_id=project_id, keys=keys)
    now = utcnow()
    to_insert: list[dict[str, Any]] = []
    slots: list[int] = []  # index of each inserted row in ``items``
    first_in_batch: dict[str, int] = {}
    for index, item in enumerate(items):
        key = item.idempotency_key
        if key and (key in known or key in first_in_batch):
            continue
        if key:
            first_in_batch[key] = index
        to_insert.append(run_values(item, project_id, now, loc=(*ITEMS_LOC, index)))
        slots.append(index)
    new_ids: dict[int, tuple[int, str]] = {}
    for index, pair in zip(slots, _insert_rows(session=session, rows=to_insert), strict=True):
        new_ids[index] = pair
    out: list[BatchItem] = []
    for index, item in enumerate(items):
        key = item.idempotency_key
        if index in new_ids:
            run_pk, run_id = new_ids[index]
            out.append(
                BatchItem(index=index, id=run_pk, run_id=run_id, idempotency_key=key, created=True)
            )
            continue
        assert key is not None
        run_pk, run_id = known[key] if key in known else new_ids[first_in_batch[key]]
        out.append(
            BatchItem(index=index, id=run_pk, run_id=run_id, idempotency_key=key, created=False)
        )
    created = len(new_ids)
    return BatchResult(created=created, existing=len(items) - created, items=out)
