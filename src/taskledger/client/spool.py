"""Where buffered mode keeps the batches it could not send: on disk (a spool directory) or, with
none configured, in memory. Both keep batches in the order they were made and know their size.

A spooled batch is one file holding the JSON body of a ``runs:batch`` request, written
atomically: a temporary file, flushed and fsynced, then renamed into place, and the directory
fsynced, so that after a crash a batch is either whole on disk or absent. Names start with a
nanosecond timestamp, the process id and a sequence number, so sorting the names gives the order
the batches were made in, across processes and restarts. A batch leaves the spool only once the
server has acknowledged it; every run in it carries its idempotency key, so sending a batch
again (after a crash between the acknowledgement and the removal, or by two processes sharing
a spool) records nothing twice.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

SUFFIX = ".batch.json"
_TEMP_PREFIX = ".tmp-"


class Backlog(Protocol):
    """Unsent batches, oldest first."""

    def append(self, content: bytes) -> None: ...
    def oldest(self) -> tuple[object, bytes] | None: ...
    def remove(self, handle: object) -> None: ...
    def __len__(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def durable(self) -> bool: ...


class MemoryBacklog:
    """Unsent batches in memory: lost if the process ends before the server answers again."""

    durable = False

    def __init__(self) -> None:
        self._batches: deque[tuple[int, bytes]] = deque()
        self._ids = itertools.count()
        self._size = 0
        self._lock = threading.Lock()

    def append(self, content: bytes) -> None:
        with self._lock:
            self._batches.append((next(self._ids), content))
            self._size += len(content)

    def oldest(self) -> tuple[object, bytes] | None:
        with self._lock:
            return self._batches[0] if self._batches else None

    def remove(self, handle: object) -> None:
        with self._lock:
            if self._batches and self._batches[0][0] == handle:
                self._size -= len(self._batches.popleft()[1])

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def size(self) -> int:
        return self._size


class Spool:
    """Unsent batches as files in ``directory`` (created if missing); see the module docstring.

    The size and the count are those of the files present when the spool was opened plus what
    this process added and removed since; another process sharing the directory may add more.
    """

    durable = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}
        for path in self._files():
            try:
                self._known[path.name] = path.stat().st_size
            except FileNotFoundError:
                continue  # taken by another process meanwhile

    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def _name(self) -> str:
        return f"{time.time_ns():020d}-{os.getpid():07d}-{next(self._seq):08d}{SUFFIX}"

    def append(self, content: bytes) -> None:
        name = self._name()
        temporary = self.directory / f"{_TEMP_PREFIX}{name}"
        with open(temporary, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.directory / name)
        self._sync_directory()
        with self._lock:
            self._known[name] = len(content)

    def _sync_directory(self) -> None:
        # The rename is durable once the directory is; not every platform can open one.
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def oldest(self) -> tuple[object, bytes] | None:
        for path in self._files():
            try:
                return path.name, path.read_bytes()
            except FileNotFoundError:
                continue  # sent and removed by another process meanwhile
        with self._lock:
            self._known.clear()
        return None

    def remove(self, handle: object) -> None:
        name = str(handle)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).unlink()
        with self._lock:
            self._known.pop(name, None)

    def __len__(self) -> int:
        return len(self._known)

    @property
    def size(self) -> int:
        return sum(self._known.values())

    def pending_files(self) -> list[Path]:
        """The batch files waiting, oldest first (for inspection and tests)."""
        return self._files()
