"""Reading runs back from NDJSON or CSV exports (``taskledger runs import``), in batches.

Import is idempotent. A row is already present, and skipped (counted as ``existing``), when the
target project holds

- the run it was exported from: the row's ``id``, with the same task and run id (so an export
  imported back into its own project records nothing; the task and run id guard against an
  export of another database, whose integer keys may coincide with this one's), or
- a run with the row's ``idempotency_key``; a row without one gets a key derived from its task,
  run id and start time, so importing the same file into another project twice records every
  run once.

References to agents or tasks that do not exist in the target project are dropped (and
counted), so an export of one project imports into another.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from taskledger.errors import ValidationFailed
from taskledger.services import run_batch
from taskledger.services.run_export import FORMULA_PREFIXES
from taskledger.services.runs import check_references
from taskledger.store.models import Project, Run

# Columns of an export that describe where a row lived, not what happened: not imported. (The
# ``id`` is read, to recognise a run that is still there, but never written.)
_LOCAL_COLUMNS = {"project_id", "created_at", "updated_at"}
_INT_COLUMNS = {"duration_ms"}
_ID = "id"


class _CellError(ValueError):
    """A CSV cell that cannot be read, and the column it is in."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass
class ImportReport:
    """What an import did."""

    read: int = 0
    created: int = 0
    existing: int = 0
    unlinked: int = 0


def detect_format(path: Path, declared: str) -> str:
    """``csv`` or ``ndjson``: as declared, or from the file name."""
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".ndjson", ".jsonl", ".json"):
        return "ndjson"
    raise ValidationFailed(f"Cannot tell the format of {path.name}; pass --format csv|ndjson.")


def _unguard(text: str) -> str:
    # Exports prefix formula-like cells with a quote; take exactly that quote off again.
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_PREFIXES:
        return text[1:]
    return text


def _from_csv(record: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, raw in record.items():
        if name is None or name in _LOCAL_COLUMNS:
            continue
        if raw == "":
            row[name] = None
            continue
        value = _unguard(raw)
        if name == "inputs":
            try:
                row[name] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise _CellError(name, f"not JSON ({exc.msg} at character {exc.pos})") from None
        elif name in _INT_COLUMNS:
            try:
                row[name] = int(value)
            except ValueError:
                raise _CellError(name, f"not an integer: {value!r}") from None
        else:
            row[name] = value
    return row


def iter_records(handle: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, run fields) for each row of an export.

    Raises:
        ValidationFailed: A row cannot be read; the message names its line (and column).
    """
    number = 0
    try:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            for record in reader:
                number = reader.line_num
                try:
                    row = _from_csv(record)
                except _CellError as exc:
                    raise ValidationFailed(f"line {number}, {exc.column}: {exc}") from None
                yield number, row
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationFailed(
                    f"line {number}: not JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise ValidationFailed(f"line {number}: not a JSON object")
            yield number, {k: v for k, v in record.items() if k not in _LOCAL_COLUMNS}
    except csv.Error as exc:
        raise ValidationFailed(f"line {number + 1}: not CSV ({exc})") from None
    except UnicodeDecodeError:
        raise ValidationFailed(f"after line {number}: not UTF-8 text") from None


def derived_key(row: dict[str, Any]) -> str:
    """A stable idempotency key for a row that brought none."""
    basis = "|".join(str(row.get(k) or "") for k in ("task", "run_id", "started_at"))
    return "import:" + hashlib.sha256(basis.encode()).hexdigest()[:40]


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None  # left for validation to report


def _unlink(*, session: Session, project: Project, rows: list[dict[str, Any]]) -> int:
    """Drop agent and task references that do not exist in ``project``; returns how many."""
    fields = ("agent_id", "task_id")
    wanted = {f: {u for row in rows if (u := _as_uuid(row.get(f))) is not None} for f in fields}
    missing_agents, missing_tasks = check_references(
        session=session,
        project_id=project.id,
        agent_ids=wanted["agent_id"],
        task_ids=wanted["task_id"],
    )
    missing = {"agent_id": missing_agents, "task_id": missing_tasks}
    unlinked = 0
    for row in rows:
        for field in fields:
            if _as_uuid(row.get(field)) in missing[field]:
                row[field] = None
                unlinked += 1
    return unlinked


def import_runs(
    sessions: sessionmaker[Session],
    project: Project,
    records: Iterable[tuple[int, dict[str, Any]]],
    *,
    batch_size: int = run_batch.MAX_BATCH,
    on_batch: Any = None,
) -> ImportReport:
    """Record ``records`` into ``project`` in batches, each batch one transaction."""
    report = ImportReport()
    batch: list[dict[str, Any]] = []
    lines: list[int] = []

    def flush() -> None:
        with sessions.begin() as session:
            present = _still_present(session=session, project=project, batch=batch)
            rows = [row for index, row in enumerate(batch) if index not in present]
            row_lines = [line for index, line in enumerate(lines) if index not in present]
            for row in rows:
                row.pop(_ID, None)
            report.existing += len(present)
            if rows:
                report.unlinked += _unlink(session=session, project=project, rows=rows)
                try:
                    result = run_batch.ingest_batch(session=session, project=project, raw=rows)
                except ValidationFailed as exc:
                    raise ValidationFailed(_with_lines(exc, row_lines)) from None
                report.created += result.created
                report.existing += result.existing
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()
        lines.clear()

    for number, row in records:
        row.setdefault("idempotency_key", None)
        if not row["idempotency_key"]:
            row["idempotency_key"] = derived_key(row)
        batch.append(row)
        lines.append(number)
        report.read += 1
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report


def _export_id(row: dict[str, Any]) -> int | None:
    value = row.get(_ID)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None  # not an export of ours: nothing to recognise the row by


def _still_present(*, session: Session, project: Project, batch: list[dict[str, Any]]) -> set[int]:
    """The indexes in ``batch`` of the rows exported from a run that ``project`` still holds:
    the same ``id``, task and run id."""
    ids = {index: run_pk for index, row in enumerate(batch) if (run_pk := _export_id(row))}
    if not ids:
        return set()
    found = {
        run_pk: (task or None, run_id or None)
        for run_pk, task, run_id in session.execute(
            select(Run.id, Run.task, Run.run_id).where(
                Run.project_id == project.id, Run.id.in_(set(ids.values()))
            )
        )
    }
    return {
        index
        for index, run_pk in ids.items()
        if run_pk in found
        and found[run_pk] == (batch[index].get("task") or None, batch[index].get("run_id") or None)
    }


def _with_lines(error: ValidationFailed, lines: list[int]) -> str:
    """The problems of a batch as one message, each item named by its line in the file."""
    messages = []
    for item in error.error_items():
        loc = list(item.get("loc", ()))
        where = ""
        if loc[: len(run_batch.ITEMS_LOC)] == list(run_batch.ITEMS_LOC):
            loc = loc[len(run_batch.ITEMS_LOC) :]
            if loc and isinstance(loc[0], int) and 0 <= loc[0] < len(lines):
                where = f"line {lines[loc[0]]}"
                loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        place = ", ".join(part for part in (where, field) if part)
        messages.append(f"{place + ': ' if place else ''}{item.get('msg', '')}")
    return "; ".join(messages)
