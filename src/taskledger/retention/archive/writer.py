"""Writing retention archives: the checksummed files rows go to before they leave the database.

The retention executor writes one part per batch with :class:`ArchiveWriter`; ``archive list``,
``archive verify`` and ``restore`` read them back with :mod:`taskledger.retention.archive.reader`.

Layout, under the archive root (a directory or ``s3://bucket/prefix``)::

    <YYYY>/<MM>/<run-id>/manifest.json
    <YYYY>/<MM>/<run-id>/<table>-<NNNNN>.jsonl.gz

``YYYY/MM`` is the run's start in UTC. Parts are numbered from 1 per table within a run
(``runs-00001``, ``runs-00002``, ``tasks-00001``), so a file name says which table it holds and
in what order its batches were taken. The run directory's URL is the archive URI.

Each part is gzip-compressed JSON Lines; :mod:`taskledger.retention.archive.format` describes
the encoding and the manifest.

The part is stored durably first, then ``manifest.json`` is rewritten durably, so a run that
stops at any point still lists every part it completed. A run that stops between the two (a
full disk on the manifest update, SIGKILL) leaves a part stored but unlisted; its rows are still
in the database, as the executor deletes only after ``write_part`` returns. Verify
(:mod:`taskledger.retention.archive.reader`) fails on any unlisted part, in a finished archive or
not: the archive is then not what its manifest says, and restore refuses it until the part is
moved out (see its ``UNLISTED_HINT``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from taskledger.retention.archive.format import (
    MANIFEST_NAME,
    Manifest,
    MemberCompressor,
    PartInfo,
    encode_row,
    key_text,
)
from taskledger.retention.archive.stores import ArchiveError, ArchiveExists, ArchiveStore
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.types import as_utc

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ArchiveWriter:
    """Writes one retention run's archive, part by part, each durable before it returns."""

    def __init__(
        self,
        store: ArchiveStore,
        *,
        run_id: str,
        started_at: datetime,
        policy_name: str | None,
        policy_hash: str | None,
        schema_revision: str | None,
        compresslevel: int = DEFAULT_GZIP_LEVEL,
    ) -> None:
        """Prepare the archive of run ``run_id``; nothing is written until the first part.

        Args:
            store: The archive root.
            run_id: The retention run's id (letters, digits, ``.``, ``_``, ``-``).
            started_at: The run's start; its UTC year and month place the run directory.
            policy_name: Name of the policy being applied.
            policy_hash: Hash of that policy.
            schema_revision: Alembic revision of the database the rows come from.
            compresslevel: gzip level; 6 is most of 9's ratio at a fraction of its time.

        Raises:
            ArchiveError: ``run_id`` cannot be a directory name.
            ArchiveExists: The run directory already holds objects; they are never overwritten.
        """
        if not _RUN_ID.fullmatch(run_id):
            raise ArchiveError(f"run id {run_id!r} cannot name an archive directory")
        self.store = store
        started = as_utc(started_at)
        self.prefix = f"{started:%Y}/{started:%m}/{run_id}"
        self.compresslevel = compresslevel
        self._manifest = Manifest(
            run_id=run_id,
            created_at=started,
            policy_name=policy_name,
            policy_hash=policy_hash,
            schema_revision=schema_revision,
        )
        self._parts_per_table: dict[str, int] = {}
        existing = store.list(self.prefix + "/")
        if existing:
            raise ArchiveExists(f"{self.uri} already holds {len(existing)} object(s)")

    @property
    def uri(self) -> str:
        """The archive URI (the run directory) that verify and restore take."""
        return self.store.uri(self.prefix)

    @property
    def manifest(self) -> Manifest:
        """The manifest as last written (or as it would be written)."""
        return self._manifest

    def write_part(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        key_column: str,
        rule: str,
        action: str,
    ) -> PartInfo | None:
        """Archive ``rows`` of ``table`` as the next part and list it in the manifest.

        When this returns, the part and the manifest naming it are durable, so the caller may
        delete the rows. An empty ``rows`` writes nothing and returns ``None``.

        Args:
            table: Table the rows come from.
            rows: Complete rows, column name to value.
            key_column: Primary key column, for the manifest's key range.
            rule: Name of the policy rule that selected the rows.
            action: What happens to the rows next (``delete``, ``scrub``, ``expire``).

        Raises:
            ArchiveError: Bad table name, a row without ``key_column``, or a finished archive.
            ArchiveStorageError: The store could not write; the rows must stay in the database.
        """
        if not rows:
            self._check_open(table)
            return None
        keys = [row.get(key_column) for row in rows if key_column in row]
        if len(keys) != len(rows):
            raise ArchiveError(f"a row of {table} has no {key_column!r} column")
        lines = [encode_row(row) for row in rows]
        return self.write_lines(table, lines, keys, key_column=key_column, rule=rule, action=action)

    def write_lines(
        self,
        table: str,
        lines: Sequence[bytes],
        keys: Sequence[Any],
        *,
        key_column: str,
        rule: str,
        action: str,
    ) -> PartInfo | None:
        """Like :meth:`write_part`, for rows already encoded as archive lines (each ending in a
        newline, as :func:`~taskledger.retention.archive.format.encode_row` writes them), with
        ``keys`` the rows' keys in the same order."""
        self._check_open(table)
        if not lines:
            return None
        if len(keys) != len(lines):
            raise ArchiveError(f"{len(lines)} lines of {table} but {len(keys)} keys")
        present = [key for key in keys if key is not None]
        try:
            low, high = (min(present), max(present)) if present else (None, None)
        except TypeError as exc:
            raise ArchiveError(f"keys of {table}.{key_column} are not comparable") from exc
        compressor = self.compressor()
        compressor.extend(lines)
        return self.write_compressed(
            table, compressor, key_min=low, key_max=high, rule=rule, action=action
        )

    def compressor(self, *, max_pending: int | None = None) -> MemberCompressor:
        """A part's lines being compressed as they are added, for :meth:`write_compressed`
        (``max_pending``: see :class:`MemberCompressor`)."""
        return MemberCompressor(compresslevel=self.compresslevel, max_pending=max_pending)

    def write_compressed(
        self,
        table: str,
        compressor: MemberCompressor,
        *,
        key_min: Any,
        key_max: Any,
        rule: str,
        action: str,
    ) -> PartInfo | None:
        """Like :meth:`write_lines`, for lines already given to ``compressor`` (from
        :meth:`compressor`), whose keys range from ``key_min`` to ``key_max``: the caller adds
        lines while it reads them, and compressing overlaps with the reading. Waits for the
        compression, then stores the part and the manifest durably."""
        self._check_open(table)
        if not compressor.rows:
            return None
        data = compressor.result()

        # The number is taken before the upload so a name is never reused, even after a failed
        # put that might have landed anyway.
        number = self._parts_per_table.get(table, 0) + 1
        self._parts_per_table[table] = number
        part = PartInfo(
            name=f"{table}-{number:05d}.jsonl.gz",
            table=table,
            rule=rule,
            action=action,
            rows=compressor.rows,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            key_min=None if key_min is None else key_text(key_min),
            key_max=None if key_max is None else key_text(key_max),
        )
        self.store.put(f"{self.prefix}/{part.name}", data)
        self._manifest = replace(self._manifest, files=(*self._manifest.files, part))
        self._write_manifest()
        return part

    def _check_open(self, table: str) -> None:
        if self._manifest.complete:
            raise ArchiveError(f"archive {self.uri} is finished; no more parts")
        if not _TABLE.fullmatch(table):
            raise ArchiveError(f"table name {table!r} cannot name an archive file")

    def finish(self) -> Manifest:
        """Mark the archive complete. A run that archived nothing leaves nothing behind."""
        if not self._manifest.complete:
            self._manifest = replace(self._manifest, complete=True)
            if self._manifest.files:
                self._write_manifest()
        return self._manifest

    def _write_manifest(self) -> None:
        self.store.put(f"{self.prefix}/{MANIFEST_NAME}", self._manifest.to_json())
