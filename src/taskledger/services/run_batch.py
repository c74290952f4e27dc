"""Bulk ingest: up to 1000 runs in one transaction, all or nothing, idempotent per item.

An item whose idempotency key is recorded already is not inserted again. By default
(``on_existing="keep"``) the stored run is left as it is; with ``"advance"`` it is moved
forward when the item is ahead of it (:func:`advance_values`), which lets a collector send the
whole current state of a run again and again, in any order, without ever moving it back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskledger.enums import TERMINAL_STATUSES
from taskledger.errors import ValidationFailed
from taskledger.schemas.runs import BatchItem, BatchResult, RunCreate
from taskledger.services.runs import check_references, duration_ms, run_values
from taskledger.store.models import Project, Run
from taskledger.store.types import utcnow

MAX_BATCH = 1000
_ITEMS = TypeAdapter(list[RunCreate])
OnExisting = Literal["keep", "advance"]
#: How far along its life a status is; ``advance`` only ever moves a run to a higher stage.
STAGE = {
    "queued": 0,
    "running": 1,
    "awaiting_approval": 1,
    "completed": 2,
    "failed": 2,
    "cancelled": 2,
}


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


def ingest_batch(
    *, session: Session, project: Project, raw: list[Any], on_existing: OnExisting = "keep"
) -> BatchResult:
    """Record every run of ``raw`` in the caller's transaction, or none of them.

    Items carrying an idempotency key already recorded (earlier, or earlier in this batch) are
    not inserted again; the result points at the original run, which ``on_existing="advance"``
    moves forward to the item when the item is ahead of it.
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
            return _insert(session=session, project_id=project.id, items=items, mode=on_existing)
    except IntegrityError:
        # Another writer recorded some of the same idempotency keys meanwhile: look again.
        with session.begin_nested():
            return _insert(session=session, project_id=project.id, items=items, mode=on_existing)


class _Stored:
    """What the batch needs of a run recorded earlier, kept current as items advance it."""

    __slots__ = ("change", "id", "run_id", "started_at", "status")

    def __init__(self, run_pk: int, run_id: str, status: str, started_at: datetime) -> None:
        self.id = run_pk
        self.run_id = run_id
        self.status = status
        self.started_at = started_at
        self.change: dict[str, Any] | None = None  # the columns to write, once advanced


def _known_keys(*, session: Session, project_id: uuid.UUID, keys: set[str]) -> dict[str, _Stored]:
    """The runs already recorded with one of ``keys``."""
    if not keys:
        return {}
    rows = session.execute(
        select(Run.idempotency_key, Run.id, Run.run_id, Run.status, Run.started_at).where(
            Run.project_id == project_id, Run.idempotency_key.in_(keys)
        )
    )
    return {
        key: _Stored(run_pk, run_id, status, started)
        for key, run_pk, run_id, status, started in rows
        if key is not None
    }


def advance_values(stored: _Stored, item: RunCreate, now: datetime) -> dict[str, Any] | None:
    """The columns that move ``stored`` to ``item``, or ``None`` when the item is not ahead.

    An item is ahead when its status is at a later stage (queued, then running or awaiting
    approval, then completed, failed or cancelled); a run in a terminal status never changes.
    Moving it takes the item's status and what it says of the outcome (``log_excerpt``,
    ``outputs_uri``, approval); a terminal status also its ``finished_at`` (now when not given,
    and never before the stored ``started_at``: clocks of different hosts disagree) and
    ``duration_ms`` (from the times when not given). The rest of the stored run is kept.
    """
    new = item.status.value
    if STAGE[new] <= STAGE[stored.status]:
        return None
    values: dict[str, Any] = {"status": new, "finished_at": None, "duration_ms": None}
    for name in ("log_excerpt", "outputs_uri", "approval_state", "approver"):
        values[name] = getattr(item, name)
    if new in TERMINAL_STATUSES:
        finished = max(item.finished_at or now, stored.started_at)
        values["finished_at"] = finished
        values["duration_ms"] = (
            item.duration_ms
            if item.duration_ms is not None
            else duration_ms(stored.started_at, finished)
        )
    return values


#: One advanced run: the item's values where it gives them, the stored ones elsewhere.
_RUNS: Table = Run.__table__  # type: ignore[assignment]
_ADVANCE = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        finished_at=func.coalesce(bindparam("b_finished_at"), _RUNS.c.finished_at),
        duration_ms=func.coalesce(bindparam("b_duration_ms"), _RUNS.c.duration_ms),
        log_excerpt=func.coalesce(bindparam("b_log_excerpt"), _RUNS.c.log_excerpt),
        outputs_uri=func.coalesce(bindparam("b_outputs_uri"), _RUNS.c.outputs_uri),
        approval_state=func.coalesce(bindparam("b_approval_state"), _RUNS.c.approval_state),
        approver=func.coalesce(bindparam("b_approver"), _RUNS.c.approver),
        updated_at=bindparam("b_updated_at"),
    )
)


def _write_advances(*, session: Session, runs: list[_Stored], now: datetime) -> None:
    params = [
        {"b_id": run.id, "b_updated_at": now, **{f"b_{k}": v for k, v in run.change.items()}}
        for run in runs
        if run.change is not None
    ]
    if params:
        session.execute(_ADVANCE, params)


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


def _insert(
    *, session: Session, project_id: uuid.UUID, items: list[RunCreate], mode: OnExisting
) -> BatchResult:
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
    current = dict(known)  # every key of the batch, as the batch leaves it
    for index, row in zip(slots, to_insert, strict=True):
        if row["idempotency_key"]:
            run_pk, run_id = new_ids[index]
            current[row["idempotency_key"]] = _Stored(
                run_pk, run_id, row["status"], row["started_at"]
            )
    out: list[BatchItem] = []
    advanced = 0
    for index, item in enumerate(items):
        key = item.idempotency_key
        if index in new_ids:
            run_pk, run_id = new_ids[index]
            out.append(
                BatchItem(
                    index=index,
                    id=run_pk,
                    run_id=run_id,
                    idempotency_key=key,
                    created=True,
                    status=item.status.value,
                )
            )
            continue
        assert key is not None
        stored = current[key]
        moved = advance_values(stored, item, now) if mode == "advance" else None
        if moved is not None:
            stored.status = moved["status"]
            # A later item of the batch keeps what an earlier one gave and it does not.
            given = {k: v for k, v in moved.items() if v is not None}
            stored.change = moved if stored.change is None else {**stored.change, **given}
            advanced += 1
        out.append(
            BatchItem(
                index=index,
                id=stored.id,
                run_id=stored.run_id,
                idempotency_key=key,
                created=False,
                advanced=moved is not None,
                status=stored.status,
            )
        )
    if advanced:
        _write_advances(session=session, runs=list(current.values()), now=now)
    created = len(new_ids)
    return BatchResult(created=created, existing=len(items) - created, advanced=advanced, items=out)
