"""Retention archives: the checksummed files rows are written to before they leave the database.

The retention executor writes one part per batch with :class:`ArchiveWriter`; ``archive list``,
``archive verify`` and ``restore`` read them back with :func:`list_archives`, :func:`verify` and
:func:`iter_rows`.

Layout, under the archive root (a directory or ``s3://bucket/prefix``)::

    <YYYY>/<MM>/<run-id>/manifest.json
    <YYYY>/<MM>/<run-id>/<table>-<NNNNN>.jsonl.gz

``YYYY/MM`` is the run's start in UTC. Parts are numbered from 1 per table within a run
(``runs-00001``, ``runs-00002``, ``tasks-00001``), so a file name says which table it holds and
in what order its batches were taken. The run directory's URL is the archive URI.

Each part is gzip-compressed JSON Lines; :mod:`taskledger.retention.archive_format` describes
the encoding and the manifest.

The part is stored durably first, then ``manifest.json`` is rewritten durably, so a run that
stops at any point still lists every part it completed. A run that stops between the two (a
full disk on the manifest update, SIGKILL) leaves a part stored but unlisted; its rows are still
in the database, as the executor deletes only after ``write_part`` returns. :func:`verify` fails
on any unlisted part, in a finished archive or not: the archive is then not what its manifest
says, and restore refuses it until the part is moved out (see :data:`UNLISTED_HINT`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from taskledger.retention.archive_format import (
    FORMAT,
    MANIFEST_NAME,
    PART_NAME,
    Manifest,
    PartInfo,
    compress_lines,
    encode_row,
    key_text,
    rows_of,
)
from taskledger.retention.stores import (
    ArchiveCorrupt,
    ArchiveError,
    ArchiveExists,
    ArchiveNotFound,
    ArchiveStore,
    open_store,
)
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.types import as_utc

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "ArchiveReader",
    "ArchiveSummary",
    "ArchiveWriter",
    "FileCheck",
    "Manifest",
    "PartInfo",
    "VerifyReport",
    "iter_rows",
    "list_archives",
    "read_manifest",
    "verify",
]

#: What verify says of a part stored in an archive but not listed in its manifest.
UNLISTED_HINT = (
    "stored but not listed in the manifest, so the archive is not what its manifest says. "
    "A run that stopped while listing a part (a full disk, a kill) leaves one behind, and its "
    "rows are still in the database; if so, move the file out of the archive and verify again"
)

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_MANIFEST_KEY = re.compile(r"(\d{4})/(\d{2})/([^/]+)/manifest\.json")


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
        newline, as :func:`~taskledger.retention.archive_format.encode_row` writes them), with
        ``keys`` the rows' keys in the same order."""
        self._check_open(table)
        if not lines:
            return None
        if len(keys) != len(lines):
            raise ArchiveError(f"{len(lines)} lines of {table} but {len(keys)} keys")
        present = [key for key in keys if key is not None]
        try:
            key_min = key_text(min(present)) if present else None
            key_max = key_text(max(present)) if present else None
        except TypeError as exc:
            raise ArchiveError(f"keys of {table}.{key_column} are not comparable") from exc

        data = compress_lines(lines, compresslevel=self.compresslevel)

        # The number is taken before the upload so a name is never reused, even after a failed
        # put that might have landed anyway.
        number = self._parts_per_table.get(table, 0) + 1
        self._parts_per_table[table] = number
        part = PartInfo(
            name=f"{table}-{number:05d}.jsonl.gz",
            table=table,
            rule=rule,
            action=action,
            rows=len(lines),
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            key_min=key_min,
            key_max=key_max,
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


@dataclass
class FileCheck:
    """What verify found for one listed file; ``problems`` is empty when it is sound."""

    name: str
    table: str
    rows: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the file passed every check."""
        return not self.problems


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`."""

    uri: str
    run_id: str
    complete: bool
    files: list[FileCheck]
    unlisted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every listed file is sound, and no part is unlisted."""
        return not self.problems and all(check.ok for check in self.files)

    @property
    def messages(self) -> list[str]:
        """Every problem as one line naming its file."""
        lines = [f"{check.name}: {problem}" for check in self.files for problem in check.problems]
        return lines + self.problems

    def raise_for_problems(self) -> None:
        """Raise ``ArchiveCorrupt`` listing every problem, unless the archive is sound."""
        if not self.ok:
            detail = "; ".join(self.messages)
            raise ArchiveCorrupt(f"archive {self.uri} failed verification: {detail}")


class ArchiveReader:
    """Reads one archive (a run directory); open once, then verify and stream its parts."""

    def __init__(
        self,
        uri: str,
        *,
        s3_endpoint_url: str | None = None,
        store: ArchiveStore | None = None,
    ) -> None:
        """Open the archive at ``uri`` and read its manifest.

        Args:
            uri: The archive URI (the run directory).
            s3_endpoint_url: Endpoint of an S3-compatible service.
            store: A store already rooted at the run directory, instead of opening ``uri``.

        Raises:
            InvalidArchiveURI: ``uri`` is not a usable location.
            ArchiveNotFound: There is no manifest there.
            ArchiveCorrupt: The manifest cannot be parsed.
        """
        self._owns_store = store is None
        if store is None:
            store = open_store(uri, s3_endpoint_url=s3_endpoint_url)
        self.store = store
        self.uri = self.store.uri()
        try:
            try:
                data = self.store.get(MANIFEST_NAME)
            except ArchiveNotFound as exc:
                raise ArchiveNotFound(f"no archive manifest at {self.uri}") from exc
            self.manifest = Manifest.from_json(data, where=self.store.uri(MANIFEST_NAME))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store if this reader opened it."""
        if self._owns_store:
            self.store.close()

    def _fetch(self, part: PartInfo) -> tuple[bytes | None, list[str]]:
        try:
            data = self.store.get(part.name)
        except ArchiveNotFound:
            return None, ["missing: listed in the manifest but not in the archive"]
        problems = []
        if len(data) != part.bytes:
            problems.append(f"size is {len(data)} bytes, manifest says {part.bytes}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != part.sha256:
            problems.append(f"sha256 is {digest}, manifest says {part.sha256}")
        return data, problems

    def verify(self) -> VerifyReport:
        """Check every listed file: present, size, sha256, and exactly ``rows`` JSON lines."""
        checks = []
        for part in self.manifest.files:
            check = FileCheck(part.name, part.table, part.rows)
            data, check.problems = self._fetch(part)
            if data is not None:
                try:
                    count = sum(1 for _row in rows_of(data))
                except ValueError as exc:
                    check.problems.append(str(exc))
                else:
                    if count != part.rows:
                        check.problems.append(f"holds {count} rows, manifest says {part.rows}")
            checks.append(check)
        listed = {part.name for part in self.manifest.files}
        unlisted = [
            key
            for key in self.store.list("")
            if key not in listed and key != MANIFEST_NAME and PART_NAME.fullmatch(key)
        ]
        # Finished or not: an interrupted run's unlisted part is most likely a batch whose
        # manifest update was cut off, but nothing in the archive proves it, and restoring
        # around a file the manifest does not vouch for would trust an archive that is not
        # what it says.
        problems = [f"{self.store.uri(key)}: {UNLISTED_HINT}" for key in unlisted]
        return VerifyReport(
            uri=self.uri,
            run_id=self.manifest.run_id,
            complete=self.manifest.complete,
            files=checks,
            unlisted=unlisted,
            problems=problems,
        )

    def iter_rows(self, part: PartInfo) -> Iterator[dict[str, Any]]:
        """Stream the rows of one part, after checking its size and sha256.

        Memory holds one compressed part (one executor batch), never the decompressed text.
        The row count can only be checked at the end: a part whose checksum matches but whose
        manifest count was edited raises after its last row (run :meth:`verify` first).

        Raises:
            ArchiveCorrupt: The part is missing, fails its checksum or size, does not
                decompress, holds a line that is not a JSON object, or has the wrong count.
        """
        data, problems = self._fetch(part)
        where = self.store.uri(part.name)
        if data is None or problems:
            raise ArchiveCorrupt(f"archive part {where} is corrupt: {'; '.join(problems)}")
        count = 0
        try:
            for row in rows_of(data):
                count += 1
                yield row
        except ValueError as exc:
            raise ArchiveCorrupt(f"archive part {where} is corrupt: {exc}") from exc
        if count != part.rows:
            raise ArchiveCorrupt(
                f"archive part {where} is corrupt: holds {count} rows, manifest says {part.rows}"
            )


def read_manifest(uri: str, *, s3_endpoint_url: str | None = None) -> Manifest:
    """Read the manifest of the archive at ``uri`` (see :class:`ArchiveReader` for errors)."""
    with ArchiveReader(uri, s3_endpoint_url=s3_endpoint_url) as reader:
        return reader.manifest


def verify(uri: str, *, s3_endpoint_url: str | None = None) -> VerifyReport:
    """Verify every file of the archive at ``uri``.

    Returns:
        A report per file; ``report.ok`` is the verdict and ``report.messages`` says why not.

    Raises:
        ArchiveNotFound: There is no manifest at ``uri``.
        ArchiveCorrupt: The manifest cannot be parsed.
    """
    with ArchiveReader(uri, s3_endpoint_url=s3_endpoint_url) as reader:
        return reader.verify()


def iter_rows(
    uri: str, part: PartInfo, *, s3_endpoint_url: str | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the rows of one part of the archive at ``uri``, checksum verified first.

    For many parts, open one :class:`ArchiveReader` and call its ``iter_rows`` instead.
    """
    with ArchiveReader(uri, s3_endpoint_url=s3_endpoint_url) as reader:
        yield from reader.iter_rows(part)


@dataclass(frozen=True)
class ArchiveSummary:
    """One archive as ``archive list`` shows it; ``error`` is set when its manifest is broken."""

    uri: str
    run_id: str
    created_at: datetime | None
    complete: bool
    files: int
    rows: int
    bytes: int
    error: str | None = None
    tables: tuple[str, ...] = ()


def list_archives(root_url: str, *, s3_endpoint_url: str | None = None) -> list[ArchiveSummary]:
    """Every archive under ``root_url``, newest first.

    An archive whose manifest cannot be read is listed with ``error`` set rather than hidden.
    """
    store = open_store(root_url, s3_endpoint_url=s3_endpoint_url)
    # Sorted by creation time; a broken manifest sorts by its directory's month instead.
    found: list[tuple[datetime, ArchiveSummary]] = []
    try:
        for key in store.list(""):
            match = _MANIFEST_KEY.fullmatch(key)
            if match is None:
                continue
            year, month, run_id = match.groups()
            run_uri = store.uri(key.rsplit("/", 1)[0])
            try:
                manifest = Manifest.from_json(store.get(key), where=store.uri(key))
            except ArchiveCorrupt as exc:
                month_start = datetime(int(year), max(1, min(12, int(month))), 1, tzinfo=UTC)
                broken = ArchiveSummary(run_uri, run_id, None, False, 0, 0, 0, error=str(exc))
                found.append((month_start, broken))
                continue
            summary = ArchiveSummary(
                uri=run_uri,
                run_id=manifest.run_id,
                created_at=manifest.created_at,
                complete=manifest.complete,
                files=len(manifest.files),
                rows=sum(part.rows for part in manifest.files),
                bytes=sum(part.bytes for part in manifest.files),
                tables=tuple(sorted({part.table for part in manifest.files})),
            )
            found.append((manifest.created_at, summary))
    finally:
        store.close()
    found.sort(key=lambda item: (item[0], item[1].uri), reverse=True)
    return [summary for _when, summary in found]
