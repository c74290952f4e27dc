"""The archive file format: how rows are encoded in parts and what ``manifest.json`` holds.

Shared by the archive writer and reader (:mod:`taskledger.retention.archive`) and by restore,
which turns archived values back into column values with :func:`decode_value`.

A part is gzip (``mtime=0``, so equal rows give equal bytes) of JSON Lines: one row per line,
columns sorted by name, ASCII only. The value of a JSON column is written as the JSON it is,
its objects' keys in the order the database gave them (SQLite: as stored; PostgreSQL: jsonb's
own order), so that restore writes back the same text. Archives written before this rule had
every key sorted, nested ones too: they read the same, and restore the same values.

Values JSON cannot carry are encoded as: datetimes as ISO 8601 in UTC with offset (naive ones
are taken to be UTC, as the store does), dates and times as ISO 8601, UUIDs and Decimals as
strings (a Decimal keeps every digit), bytes as ``{"$base64": "..."}``, enums as their value.
The encoding is not self-describing: restore converts values back using the Python type of the
column it inserts into (``decode_value``). JSON columns are left as they are, so a
``{"$base64": ...}`` object inside a JSON column is never mistaken for bytes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import cached_property
from typing import Any
from uuid import UUID

from taskledger.retention.archive.stores import ArchiveCorrupt, check_key
from taskledger.settings import DEFAULT_GZIP_LEVEL
from taskledger.store.types import as_utc

FORMAT = "taskledger-archive/1"
MANIFEST_NAME = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A part's file name: its table, then its number within the run (at least five digits).
PART_NAME = re.compile(r"([a-z][a-z0-9_]{0,62})-(\d{5,})\.jsonl\.gz")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # before date: datetime is a date
        return as_utc(value).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot archive a value of type {type(value).__name__}")


#: The exact types a row holds most (by far): converted without the isinstance chain.
_FAST: dict[type, Any] = {UUID: str, datetime: lambda value: as_utc(value).isoformat()}


def _fast_default(value: Any) -> Any:
    convert = _FAST.get(type(value))
    return convert(value) if convert is not None else _json_default(value)


# One encoder for every row: json.dumps would build a new one per call. It never sorts keys:
# the columns are put in order by encode_row, and a JSON value keeps the key order it was
# stored with (sorting it would change the stored text that restore writes back).
_ENCODER = json.JSONEncoder(default=_fast_default, separators=(",", ":"))


def encode_row(row: Mapping[str, Any]) -> bytes:
    """One row as a JSON line (columns sorted, ASCII-only, ending in a newline); the objects
    inside a JSON column keep their keys in the order they come in."""
    # A real dict in column order: json only serialises dicts, and SQLAlchemy hands over
    # RowMapping objects.
    return _ENCODER.encode({name: row[name] for name in sorted(row)}).encode("ascii") + b"\n"


def decode_line(line: str | bytes) -> dict[str, Any]:
    """Parse one archived line; raises ``ValueError`` unless it is a JSON object."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("line is not a JSON object")
    return row


def key_text(value: Any) -> str:
    """A key as the manifest's ``key_min``/``key_max`` show it (the JSON encoding, as text)."""
    encoded = _json_default(value) if not isinstance(value, str | int | float) else value
    return str(encoded)


@dataclass(frozen=True)
class PartInfo:
    """One part file as the manifest lists it."""

    name: str
    table: str
    rule: str
    action: str
    rows: int
    bytes: int
    sha256: str
    key_min: str | None
    key_max: str | None

    @cached_property
    def json_line(self) -> str:
        """The part's entry in the manifest: one line of JSON, encoded once per part."""
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``."""

    run_id: str
    created_at: datetime
    policy_name: str | None
    policy_hash: str | None
    schema_revision: str | None
    complete: bool = False
    files: tuple[PartInfo, ...] = ()
    format: str = FORMAT

    def to_json(self) -> bytes:
        """The manifest file's bytes: one field per line, then one line per file.

        It is rewritten after every part, so each part's entry is encoded once and reused: the
        time to write it grows with the number of parts, not with its square.
        """
        header = {
            "format": self.format,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "policy_name": self.policy_name,
            "policy_hash": self.policy_hash,
            "schema_revision": self.schema_revision,
            "complete": self.complete,
        }
        fields = [f"  {json.dumps(name)}: {json.dumps(value)}," for name, value in header.items()]
        files = ",\n".join(f"    {part.json_line}" for part in self.files)
        body = f'  "files": [\n{files}\n  ]' if files else '  "files": []'
        return "\n".join(["{", *fields, body, "}", ""]).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Manifest:
        """Parse and check a manifest; raises ``ArchiveCorrupt`` naming ``where``."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("format") != FORMAT:
                raise ValueError(f"unsupported format {doc.get('format')!r} (expected {FORMAT})")
            created_at = datetime.fromisoformat(_typed(doc, "created_at", str))
            if created_at.tzinfo is None:
                raise ValueError("created_at has no UTC offset")
            files = _typed(doc, "files", list)
            parts = tuple(_part_from_json(entry) for entry in files)
            names = [part.name for part in parts]
            if len(set(names)) != len(names):
                raise ValueError("a file is listed twice")
            return cls(
                run_id=_typed(doc, "run_id", str),
                created_at=created_at,
                policy_name=_typed(doc, "policy_name", str, optional=True),
                policy_hash=_typed(doc, "policy_hash", str, optional=True),
                schema_revision=_typed(doc, "schema_revision", str, optional=True),
                complete=_typed(doc, "complete", bool),
                files=parts,
            )
        except (ValueError, TypeError, ArchiveCorrupt) as exc:
            raise ArchiveCorrupt(f"manifest {where} is unreadable: {exc}") from exc


def _typed(doc: Mapping[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = doc.get(name)
    if value is None and optional:
        return None
    # bool is an int in Python; a count of True rows is still a broken manifest.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name!r} must be {kind.__name__}, not {value!r}")
    return value


def _part_from_json(entry: Any) -> PartInfo:
    if not isinstance(entry, dict):
        raise ValueError(f"file entry {entry!r} is not an object")
    part = PartInfo(
        name=check_key(_typed(entry, "name", str)),
        table=_typed(entry, "table", str),
        rule=_typed(entry, "rule", str),
        action=_typed(entry, "action", str),
        rows=_typed(entry, "rows", int),
        bytes=_typed(entry, "bytes", int),
        sha256=_typed(entry, "sha256", str),
        key_min=_typed(entry, "key_min", str, optional=True),
        key_max=_typed(entry, "key_max", str, optional=True),
    )
    name = PART_NAME.fullmatch(part.name)
    # The table decides where restore inserts rows, so it must agree with the file's name.
    if name is None or name.group(1) != part.table:
        raise ValueError(f"file entry {part.name!r} does not name a part of table {part.table!r}")
    if part.rows < 0 or part.bytes < 0 or not _SHA256.fullmatch(part.sha256):
        raise ValueError(f"file entry {part.name!r} has an invalid count, size or sha256")
    return part


def decode_value(value: Any, kind: type) -> Any:
    """Turn an archived value back into a value of Python type ``kind`` (a column's type).

    ``None`` stays ``None``; types the encoding leaves alone (str, int, float, bool, JSON
    structures) come back unchanged.
    """
    if value is None:
        return None
    if kind is datetime:
        return as_utc(datetime.fromisoformat(value))
    if kind is date:
        return date.fromisoformat(value)
    if kind is time:
        return time.fromisoformat(value)
    if kind is UUID:
        return UUID(value)
    if kind is Decimal:
        return Decimal(value)
    if kind is bytes:
        return base64.b64decode(value["$base64"], validate=True)
    return value


def compress_rows(
    rows: Iterable[Mapping[str, Any]], *, compresslevel: int = DEFAULT_GZIP_LEVEL
) -> bytes:
    """The bytes of one part holding ``rows``."""
    return compress_lines([encode_row(row) for row in rows], compresslevel=compresslevel)


#: Lines are compressed in pieces of about this size, in parallel; each piece is one gzip member.
MEMBER_BYTES = 320 * 1024
_compressors: ThreadPoolExecutor | None = None
_compressors_lock = threading.Lock()


class MemberCompressor:
    """Compresses lines into one part's bytes as they come: every :data:`MEMBER_BYTES` of lines
    (cut at a line end) goes to the compression threads at once, so that compressing overlaps
    with whatever produces the next lines (reading them from the database, the batch's
    DELETE). :meth:`result` waits for the members and joins them.

    The cut depends only on the lines, so equal lines give equal bytes, however they came.
    With ``max_pending``, adding waits while more than that many members are still being
    compressed: the lines not yet compressed stay within ``max_pending + 1`` members, however
    fast they come.
    """

    def __init__(
        self, *, compresslevel: int = DEFAULT_GZIP_LEVEL, max_pending: int | None = None
    ) -> None:
        self.compresslevel = compresslevel
        self.max_pending = max_pending
        #: Lines added so far.
        self.rows = 0
        self._lines: list[bytes] = []
        self._size = 0
        self._members: list[Future[bytes]] = []
        self._settled = 0  # members before this one are known compressed

    def add(self, line: bytes) -> None:
        """Add one line (an encoded row ending in a newline)."""
        self._lines.append(line)
        self.rows += 1
        self._size += len(line)
        if self._size >= MEMBER_BYTES:
            self._cut()

    def extend(self, lines: Iterable[bytes]) -> None:
        """Add every line of ``lines``."""
        for line in lines:
            self.add(line)

    def _cut(self) -> None:
        piece = b"".join(self._lines)
        self._lines, self._size = [], 0
        self._members.append(_pool().submit(self._compress, piece))
        if self.max_pending is not None:
            while len(self._members) - self._settled > self.max_pending:
                self._members[self._settled].result()  # members finish in about this order
                self._settled += 1

    def _compress(self, piece: bytes) -> bytes:
        return gzip.compress(piece, compresslevel=self.compresslevel, mtime=0)

    def result(self) -> bytes:
        """The part's bytes: every member, in order (one empty member when no line came). The
        compressor lets go of its members, so that only the joined bytes are left to hold."""
        if not self._members:
            return self._compress(b"".join(self._lines))
        if self._lines:
            self._cut()
        members, self._members, self._settled = self._members, [], 0
        return b"".join(member.result() for member in members)


def compress_lines(lines: Sequence[bytes], *, compresslevel: int = DEFAULT_GZIP_LEVEL) -> bytes:
    """The bytes of one part holding ``lines`` (encoded rows, each ending in a newline).

    A gzip file may hold several members one after the other, and every reader (this module,
    ``gzip -d``, ``zcat``) reads them as one stream. Lines are cut into members of about
    :data:`MEMBER_BYTES`, at line ends, compressed on one thread per CPU, up to 4 (zlib releases
    the GIL); see :class:`MemberCompressor`.
    """
    compressor = MemberCompressor(compresslevel=compresslevel)
    compressor.extend(lines)
    return compressor.result()


def _pool() -> ThreadPoolExecutor:
    global _compressors
    with _compressors_lock:
        if _compressors is None:
            workers = min(4, os.cpu_count() or 1)
            _compressors = ThreadPoolExecutor(workers, thread_name_prefix="taskledger-gzip")
        return _compressors


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: it starts a pool of its own.
    global _compressors, _compressors_lock
    _compressors, _compressors_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def rows_of(data: bytes) -> Iterator[dict[str, Any]]:
    """Decompress and parse incrementally; any damage becomes a ``ValueError`` with a line."""
    number = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
            for number, line in enumerate(gz, start=1):
                try:
                    row = decode_line(line)
                except ValueError as exc:
                    raise ValueError(f"line {number} is not a JSON object: {exc}") from exc
                yield row
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"does not decompress after line {number}: {exc}") from exc
