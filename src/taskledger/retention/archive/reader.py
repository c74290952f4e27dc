"""Reading retention archives back: verify one, stream its parts' rows, list every archive.

Used by ``archive list``, ``archive verify`` and ``restore`` (CLI and API). The layout and the
durability rules are those :mod:`taskledger.retention.archive.writer` describes; the encoding is
:mod:`taskledger.retention.archive.format`'s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskledger.retention.archive.format import (
    MANIFEST_NAME,
    PART_NAME,
    Manifest,
    PartInfo,
    rows_of,
)
from taskledger.retention.archive.stores import (
    ArchiveCorrupt,
    ArchiveNotFound,
    ArchiveStore,
    open_store,
)

#: What verify says of a part stored in an archive but not listed in its manifest.
UNLISTED_HINT = (
    "stored but not listed in the manifest, so the archive is not what its manifest says. "
    "A run that stopped while listing a part (a full disk, a kill) leaves one behind, and its "
    "rows are still in the database; if so, move the file out of the archive and verify again"
)

_MANIFEST_KEY = re.compile(r"(\d{4})/(\d{2})/([^/]+)/manifest\.json")


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
