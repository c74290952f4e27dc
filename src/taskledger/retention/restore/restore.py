"""Restore: put the rows of a retention archive back into the database.

Used by ``taskledger restore`` and ``POST /api/v1/admin/restore``. The archive is verified first
(every checksum and count); a damaged archive changes nothing. Then each table, parents before
children, is streamed part by part in batches, one short transaction per batch (like the
executor), so memory stays flat however large the archive:

- a row whose key is absent is inserted (``inserted``), unless a required parent is in neither
  the database nor the archive (``orphaned``, skipped); a nullable reference to a missing parent
  is left empty (``unattached``, still inserted);
- a row whose key exists is judged by :func:`taskledger.retention.restore.judge.judge`: a scrubbed
  or expired (or unlinked) version gets its archived fields back (``restored``), an identical one
  is ``skipped``, one changed since is a ``conflict`` (skipped, left alone); so is a row another
  row's unique value keeps out. The report names each conflict with its key and why;
- a credential (an API key, see ``CREDENTIALS`` in :mod:`.judge`) is inserted revoked: a restore
  never brings a key back to life. Keys that were live when archived are counted and named as
  ``revoked``.

Every archived row ends in exactly one of inserted, restored, skipped and orphaned. Running a
restore twice inserts nothing the second time. The work is recorded in the audit log
(``retention_runs``, mode ``restore``), failures included, with the same report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, text, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from taskledger.enums import RetentionMode, RetentionOutcome, RetentionTrigger
from taskledger.retention.archive.format import PartInfo
from taskledger.retention.archive.reader import ArchiveReader
from taskledger.retention.audit import AuditHandle, close_audit, open_audit
from taskledger.retention.execute.executor import Progress
from taskledger.retention.restore.judge import (
    CONFLICT,
    PARTIAL_ACTIONS,
    RESTORABLE,
    SAME,
    ArchiveIncompatible,
    Key,
    TableInfo,
    check_tables,
    judge,
    part_order,
    table_info,
)
from taskledger.retention.restore.report import (
    DIFFERENT_ROW,
    Conflict,
    RestoreReport,
    TableCounts,
    unique_clash,
)
from taskledger.retention.safeguards.lock import holder_identity, runner_lock
from taskledger.store.engine import make_session_factory
from taskledger.store.types import utcnow


def restore(
    engine: Engine,
    uri: str,
    *,
    tables: Sequence[str] | None = None,
    dry_run: bool = False,
    s3_endpoint_url: str | None = None,
    actor: str,
    trigger: RetentionTrigger | str,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> RestoreReport:
    """Verify the archive at ``uri``, then put its rows back (see the module docstring).

    Args:
        engine: The database to restore into (SQLite or PostgreSQL, whichever wrote the archive).
        uri: The archive URI (a run directory, local or ``s3://``).
        tables: Restore only these tables; ``None`` means every table in the archive.
        dry_run: Compute the same counts without writing (the audit row is still written).
        s3_endpoint_url: Endpoint of an S3-compatible service.
        actor: Who asked, for the audit log.
        trigger: ``cli`` or ``api``.
        batch_size: Archived rows per transaction.
        progress: Called with (table, rows handled) after each batch.

    Returns:
        The counts, in total and per table.

    Raises:
        UnknownTable: ``tables`` names a table restore cannot write (before anything else).
        ArchiveNotFound, InvalidArchiveURI: Nothing usable at ``uri``.
        ArchiveCorrupt: A checksum, size or count does not match; the database is unchanged.
        ArchiveIncompatible: The archive holds tables or columns this database lacks.
        LockHeld: A retention run is going on (not for a dry run).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    wanted = check_tables(tables) if tables is not None else None
    sessions = make_session_factory(engine)
    handle = open_audit(sessions, actor=actor, trigger=trigger, mode=RetentionMode.RESTORE)
    report = RestoreReport(
        uri=uri, archive_run_id=None, retention_run_id=handle.id, dry_run=dry_run
    )
    closed = False
    try:
        with ArchiveReader(uri, s3_endpoint_url=s3_endpoint_url) as reader:
            report.uri = reader.uri
            report.archive_run_id = reader.manifest.run_id
            # A restore that writes holds the runner lock from before the verify: an archive a
            # run is still writing is refused as busy, not judged while a part is half listed.
            # Its audit row is closed before the lock goes, so a restore killed after letting
            # go never leaves a row the next runner cannot tell from a live one.
            holder = f"{actor} restore ({holder_identity()})"
            with (
                contextlib.nullcontext()
                if dry_run
                else runner_lock(engine, holder=holder, audit_id=handle.id)
            ):
                try:
                    reader.verify().raise_for_problems()
                    plan = _plan(reader.manifest.files, wanted)
                    report.tables = {name: TableCounts() for name in plan}
                    _Restore(engine, reader, report, dry_run, batch_size, progress).run(plan)
                except Exception as exc:
                    closed = True
                    _close(sessions, handle, report, RetentionOutcome.FAILED, error=_describe(exc))
                    raise
                closed = True
                _close(
                    sessions,
                    handle,
                    report,
                    RetentionOutcome.DRY_RUN if dry_run else RetentionOutcome.OK,
                )
    except Exception as exc:
        if not closed:  # the archive could not be opened, or the lock refused
            _close(sessions, handle, report, RetentionOutcome.FAILED, error=_describe(exc))
        raise
    return report


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _close(
    sessions: sessionmaker[Session],
    handle: AuditHandle,
    report: RestoreReport,
    outcome: RetentionOutcome,
    *,
    error: str | None = None,
) -> None:
    report.outcome = outcome
    close_audit(
        sessions,
        handle,
        outcome=outcome,
        counts=report.to_dict(),
        archive_uri=report.uri,
        error=error,
    )


def _plan(parts: Iterable[PartInfo], wanted: list[str] | None) -> dict[str, list[PartInfo]]:
    """The parts to apply per table, tables parents first."""
    by_table: dict[str, list[PartInfo]] = {}
    for part in parts:
        by_table.setdefault(part.table, []).append(part)
    unknown = sorted(set(by_table) - set(RESTORABLE))
    if unknown:
        raise ArchiveIncompatible(
            f"the archive holds table {', '.join(unknown)}, which restore cannot write"
        )
    order = check_tables(by_table) if wanted is None else wanted
    return {name: part_order(by_table.get(name, [])) for name in order}


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Restore:
    """One restore's state: the archive, the report, and (dry run) the keys it would insert."""

    def __init__(
        self,
        engine: Engine,
        reader: ArchiveReader,
        report: RestoreReport,
        dry_run: bool,
        batch_size: int,
        progress: Progress | None,
    ) -> None:
        self.engine = engine
        self.reader = reader
        self.report = report
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.progress = progress
        # A dry run writes nothing, so the parents it would insert are remembered (keys only,
        # and only of tables that other tables refer to) for its children's parent checks.
        self.pending: dict[str, set[Any]] = {}
        # Restored credentials are revoked as of the restore's start, all with one time.
        self.now = utcnow()
        # SQLite: take the write lock at BEGIN, so a batch's checks and writes see one state.
        self._bind = engine.execution_options(sqlite_begin="IMMEDIATE")

    def run(self, plan: dict[str, list[PartInfo]]) -> None:
        parents = {fk.parent_table for name in plan for fk in table_info(name).foreign_keys}
        for name, parts in plan.items():
            info = table_info(name)
            track = self.dry_run and name in parents and len(info.key_columns) == 1
            for part in parts:
                where = self.reader.store.uri(part.name)
                rows = (info.decode(raw, where=where) for raw in self.reader.iter_rows(part))
                for batch in _batches(rows, self.batch_size):
                    self._batch(info, batch, partial=part.action in PARTIAL_ACTIONS, track=track)
                    if self.progress is not None:
                        self.progress(name, len(batch))
            if not self.dry_run and info.serial_column and self.report.tables[name].inserted:
                with self.engine.begin() as conn:
                    _advance_sequence(conn, info)

    def _batch(
        self, info: TableInfo, rows: list[dict[str, Any]], *, partial: bool, track: bool
    ) -> None:
        counts = TableCounts()
        with self._bind.begin() as conn:
            live = _live_rows(conn, info, [info.key_of(r) for r in rows])
            missing = self._missing_parents(conn, info, rows)
            inserts: list[dict[str, Any]] = []
            updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for row in rows:
                current = live.get(info.key_of(row))
                if current is None:
                    if partial:  # only a key and a reference: nothing to insert
                        counts.skipped += 1
                    elif _requires_missing(info, row, missing):
                        counts.orphaned += 1
                    else:
                        counts.unattached += _detach(info, row, missing)
                        inserts.append(row)
                    continue
                self._judge(info, row, current, missing, counts, updates)
            inserts = _drop_unique_clashes(conn, info, inserts, counts)
            counts.inserted += len(inserts)
            self._revoke(info, inserts, counts)
            if self.dry_run:
                if track:
                    self.pending.setdefault(info.name, set()).update(
                        r[info.key_columns[0]] for r in inserts
                    )
            else:
                if inserts:
                    conn.execute(insert(info.table), inserts)
                for current, changes in updates:
                    _put_back(conn, info, current, changes)
        self.report.tables[info.name].add(counts)

    def _revoke(self, info: TableInfo, rows: list[dict[str, Any]], counts: TableCounts) -> None:
        """Credentials come back revoked: a key revoked before it was archived keeps its time,
        any other is revoked now (and counted)."""
        column = info.revoke_column
        if column is None:
            return
        for row in rows:
            if row.get(column) is None:
                row[column] = self.now
                counts.revoke(info.key_of(row))

    def _judge(
        self,
        info: TableInfo,
        row: dict[str, Any],
        current: dict[str, Any],
        missing: dict[str, set[Any]],
        counts: TableCounts,
        updates: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:
        verdict = judge(info, row, current)
        if verdict == SAME:
            counts.skipped += 1
            return
        if verdict == CONFLICT:
            differing = tuple(c for c in row if row[c] != current[c])
            counts.conflict(Conflict(_key_dict(info, row), DIFFERENT_ROW, differing))
            return
        changes: dict[str, Any] = dict(verdict)
        lost = [
            fk.column for fk in info.foreign_keys if changes.get(fk.column) in missing[fk.column]
        ]
        for column in lost:  # the parent is gone: the reference stays empty
            del changes[column]
        if lost:
            counts.unattached += 1
        if any(c not in info.onupdate_columns for c in changes):
            counts.restored += 1
            updates.append((current, changes))
        else:
            counts.skipped += 1

    def _missing_parents(
        self, conn: Connection, info: TableInfo, rows: list[dict[str, Any]]
    ) -> dict[str, set[Any]]:
        """Per reference column, the values in ``rows`` whose parent row does not exist."""
        missing: dict[str, set[Any]] = {}
        for fk in info.foreign_keys:
            wanted = {r[fk.column] for r in rows if r.get(fk.column) is not None}
            found: set[Any] = set()
            if wanted:
                parent = table_info(fk.parent_table).table.c[fk.parent_column]
                found = set(conn.scalars(select(parent).where(parent.in_(wanted))))
            missing[fk.column] = wanted - found - self.pending.get(fk.parent_table, set())
        return missing


def _key_clause(info: TableInfo, keys: Sequence[Key]) -> Any:
    columns = [info.table.c[c] for c in info.key_columns]
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_(keys)


def _live_rows(conn: Connection, info: TableInfo, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
    rows = [
        dict(r) for r in conn.execute(select(info.table).where(_key_clause(info, keys))).mappings()
    ]
    return {info.key_of(row): row for row in rows}


def _requires_missing(info: TableInfo, row: dict[str, Any], missing: dict[str, set[Any]]) -> bool:
    return any(
        not fk.nullable and row.get(fk.column) in missing[fk.column] for fk in info.foreign_keys
    )


def _detach(info: TableInfo, row: dict[str, Any], missing: dict[str, set[Any]]) -> int:
    """Empty the nullable references of ``row`` whose parent is missing; 1 if any was."""
    detached = 0
    for fk in info.foreign_keys:
        if fk.nullable and row.get(fk.column) in missing[fk.column]:
            row[fk.column] = None
            detached = 1
    return detached


def _drop_unique_clashes(
    conn: Connection, info: TableInfo, rows: list[dict[str, Any]], counts: TableCounts
) -> list[dict[str, Any]]:
    """Leave out rows that would break a unique constraint (another row holds their values)."""
    for columns in info.unique_sets:
        values = {
            tuple(r.get(c) for c in columns)
            for r in rows
            if all(r.get(c) is not None for c in columns)
        }
        if not values:
            continue
        taken = {
            tuple(row)
            for row in conn.execute(
                select(*[info.table.c[c] for c in columns]).where(
                    tuple_(*[info.table.c[c] for c in columns]).in_(list(values))
                )
            )
        }
        if not taken:
            continue
        kept = []
        for row in rows:
            if tuple(row.get(c) for c in columns) in taken:
                counts.conflict(Conflict(_key_dict(info, row), unique_clash(columns), columns))
            else:
                kept.append(row)
        rows = kept
    return rows


def _key_dict(info: TableInfo, row: dict[str, Any]) -> dict[str, Any]:
    return {column: row[column] for column in info.key_columns}


def _put_back(
    conn: Connection, info: TableInfo, current: dict[str, Any], changes: dict[str, Any]
) -> None:
    values = dict(changes)
    # Without an explicit value, updated_at's onupdate would stamp the restore time on the row.
    for column in info.onupdate_columns:
        values.setdefault(column, current[column])
    where = [info.table.c[c] == bindparam(f"_key_{c}") for c in info.key_columns]
    params = {f"_key_{c}": current[c] for c in info.key_columns}
    conn.execute(update(info.table).where(*where).values(values), params)


def _advance_sequence(conn: Connection, info: TableInfo) -> None:
    """PostgreSQL: move the key's sequence past the highest id (never back), so that rows
    inserted later do not collide with restored ones. SQLite needs nothing: an AUTOINCREMENT
    key goes past the highest id it ever held, restored ones included."""
    if conn.dialect.name != "postgresql" or info.serial_column is None:
        return
    sequence = conn.scalar(
        text("SELECT pg_get_serial_sequence(:table, :column)"),
        {"table": info.name, "column": info.serial_column},
    )
    if sequence is None:
        return
    column = info.serial_column
    # Names come from the models, never from input.
    conn.execute(
        text(
            f'SELECT setval(CAST(:seq AS regclass), GREATEST(COALESCE(MAX("{column}"), 1), '  # noqa: S608
            f'COALESCE(pg_sequence_last_value(CAST(:seq AS regclass)), 1))) FROM "{info.name}"'
        ),
        {"seq": sequence},
    )
