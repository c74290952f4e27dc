"""Where retention archives live (a local directory or S3-compatible storage), and their errors.

The archive writer, verifier and restore talk to an :class:`ArchiveStore`; ``open_store`` turns
the URL an operator typed (or configured) into one: a :class:`LocalStore`, or an ``S3Store``
(:mod:`taskledger.retention.archive.s3`). A ``put`` that returns is durable, because
the executor deletes rows from the database right after it.

Its errors (``ArchiveError`` and its subclasses, raised here and by
:mod:`taskledger.retention.archive`) are drawn with the rest of the tree in
:mod:`taskledger.errors`. ``InvalidArchiveURI`` is ``INVALID`` because the URL usually comes from
the caller (``archive verify URI``, ``restore URI``). When a URL comes from settings, the caller
wraps it in ``ConfigurationError``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from taskledger.errors import (
    ConflictError,
    ErrorKind,
    NotFoundError,
    TaskledgerError,
    ValidationFailed,
)
from taskledger.settings import DEFAULT_GZIP_LEVEL, Settings


class ArchiveError(TaskledgerError):
    """The archive cannot be used as asked."""

    kind = ErrorKind.INTERNAL


class InvalidArchiveURI(ArchiveError, ValidationFailed):
    """The archive URL or path is not usable."""

    kind = ErrorKind.INVALID


class ArchiveNotFound(ArchiveError, NotFoundError):
    """No archive at that location."""

    kind = ErrorKind.NOT_FOUND


class ArchiveExists(ArchiveError, ConflictError):
    """An archive already exists at that location."""

    kind = ErrorKind.CONFLICT


class ArchiveCorrupt(ArchiveError):
    """The archive fails its checks."""

    kind = ErrorKind.INVALID


class ArchiveStorageError(ArchiveError):
    """The archive storage failed."""

    kind = ErrorKind.UNAVAILABLE


class ArchiveStore(Protocol):
    """A flat namespace of ``/``-separated keys holding bytes.

    Keys are relative to the store's root, never start with ``/`` and never contain ``..``.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; when this returns the object survives a crash."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises ``ArchiveNotFound`` when there are none."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` (plain string prefix, as on S3), sorted."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def uri(self, key: str = "") -> str:
        """The URL of ``key`` (or of the root), which ``open_store`` accepts."""
        ...

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...


_KEY_PART = re.compile(r"[^/\\\x00]+")


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``ArchiveCorrupt``.

    Manifests name their files, so a key may come from an edited file; refusing ``..`` and
    absolute keys keeps a hostile manifest from reading outside the archive.

    Args:
        key: The key to check.
        prefix: Allow the empty key and a trailing ``/`` (list prefixes).
    """
    body = key[:-1] if prefix and key.endswith("/") else key
    if prefix and body == "":
        return key
    parts = body.split("/")
    if not all(_KEY_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise ArchiveCorrupt(f"unsafe archive key {key!r}")
    return key


def _fsync_dir(path: Path) -> None:
    # A rename or a new directory entry is only durable once its directory is synced.
    if os.name == "nt":  # Windows cannot open directories; NTFS journals metadata itself.
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """An archive store in a local directory, written with temp file + fsync + rename."""

    def __init__(self, root: Path) -> None:
        """Open a store rooted at ``root``; nothing is created until the first ``put``."""
        self.root = root.expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise InvalidArchiveURI(f"archive location {self.root} is not a directory")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another writer made it first
                new.mkdir()
            _fsync_dir(new.parent)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically and durably: a reader sees all of it or nothing."""
        path = self._path(key)
        try:
            self._makedirs(path.parent)
            # mkstemp creates the file 0600: archived rows may hold payloads meant for few eyes.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ArchiveStorageError(f"could not write {path}: {exc}") from exc

    def get(self, key: str) -> bytes:
        """Read the whole object."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ArchiveNotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise ArchiveStorageError(f"could not read {path}: {exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        """Keys under the root starting with ``prefix``; temporary files are left out."""
        check_key(prefix, prefix=True)
        # Walk only the deepest directory the prefix names, not the whole archive tree.
        start = self.root.joinpath(*prefix.split("/")[:-1])
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith("."):  # in-flight temp files of put()
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def uri(self, key: str = "") -> str:
        """The absolute path of ``key``."""
        return str(self._path(key) if key else self.root)

    def close(self) -> None:
        """Nothing to release."""


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,254}", re.IGNORECASE)


@dataclass(frozen=True)
class ArchiveTarget:
    """Where an execution or a delete archives to, and how hard it compresses (gzip 1-9)."""

    url: str
    s3_endpoint_url: str | None = None
    gzip_level: int = DEFAULT_GZIP_LEVEL

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveTarget:
        """The archive root, endpoint and gzip level the settings configure."""
        return cls(
            settings.resolved_archive_url,
            settings.archive.s3_endpoint_url,
            settings.archive.gzip_level,
        )


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> ArchiveStore:
    """Open the archive store that ``url`` names.

    Args:
        url: A local path (absolute, relative to the working directory, or ``~``-prefixed), a
            ``file://`` URL, or ``s3://bucket[/prefix]``.
        s3_endpoint_url: Endpoint of an S3-compatible service, for ``s3://`` URLs.

    Returns:
        A store rooted at the location; opening creates nothing.

    Raises:
        InvalidArchiveURI: The URL is empty, has an unsupported scheme or an unsafe path.
        ConfigurationError: An ``s3://`` URL without boto3 installed.
    """
    if not url or not url.strip():
        raise InvalidArchiveURI("the archive location is empty")
    split = urlsplit(url)
    scheme = split.scheme.lower()
    if scheme == "s3":
        if split.query or split.fragment:
            raise InvalidArchiveURI(f"{url!r}: s3 URLs take no query or fragment")
        if not _BUCKET.fullmatch(split.netloc):
            raise InvalidArchiveURI(f"{url!r}: not a valid bucket name {split.netloc!r}")
        prefix = split.path.strip("/")
        try:
            if prefix:
                check_key(prefix)
        except ArchiveCorrupt as exc:
            raise InvalidArchiveURI(f"{url!r}: the key prefix is not a clean path") from exc
        # Imported here: the S3 store builds on this module's errors and key checks.
        from taskledger.retention.archive.s3 import S3Store

        return S3Store(split.netloc, prefix, endpoint_url=s3_endpoint_url)
    if scheme == "file":
        if split.netloc not in ("", "localhost") or split.query or split.fragment:
            raise InvalidArchiveURI(f"{url!r}: only file:///absolute/path URLs are supported")
        return LocalStore(Path(unquote(split.path)))
    # One letter is a Windows drive ("C:\\archives"), not a scheme.
    if scheme and len(scheme) > 1:
        raise InvalidArchiveURI(
            f"{url!r}: unsupported archive scheme {scheme!r} (use a path, file:// or s3://)"
        )
    return LocalStore(Path(url))


def confine(uri: str, root: str) -> str:
    """The archive ``uri``, checked to lie inside the archive root ``root``.

    For callers that must not reach other locations (the HTTP API): a local path outside the
    root (after resolving ``..`` and symbolic links), another bucket or prefix, or another kind
    of store is refused. A relative ``uri`` is taken relative to the root.

    Returns:
        The URI in the form ``open_store`` accepts: an absolute path or ``s3://bucket/key``.

    Raises:
        InvalidArchiveURI: ``uri`` is empty, malformed or outside ``root``.
    """
    if not uri or not uri.strip():
        raise InvalidArchiveURI("the archive location is empty")
    outside = InvalidArchiveURI(f"{uri!r} is not inside the archive root {root}")
    split, root_split = urlsplit(uri), urlsplit(root)
    scheme = split.scheme.lower() if len(split.scheme) > 1 else ""
    if root_split.scheme.lower() == "s3":
        bucket, prefix = root_split.netloc, root_split.path.strip("/")
        if scheme == "s3":
            if split.netloc != bucket or split.query or split.fragment:
                raise outside
            key = split.path.strip("/")
        elif scheme or uri.startswith("/"):
            raise outside
        else:
            key = "/".join(p for p in (prefix, uri.strip("/")) if p)
        try:
            check_key(key)
        except ArchiveCorrupt as exc:
            raise outside from exc
        if prefix and not key.startswith(prefix + "/"):
            raise outside
        return f"s3://{bucket}/{key}"
    base = open_store(root).uri()
    if (scheme and scheme != "file") or "\x00" in uri:
        raise outside
    # Worked out from the text alone, never by opening it: whether something exists outside the
    # root, or what it is, must not change the answer.
    local = Path(unquote(split.path)) if scheme == "file" else Path(uri)
    path = local if local.is_absolute() else Path(base) / local
    resolved, root_path = Path(os.path.realpath(path)), Path(os.path.realpath(base))
    if resolved == root_path or not resolved.is_relative_to(root_path):
        raise outside
    return str(resolved)
