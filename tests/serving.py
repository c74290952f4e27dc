"""Real ``taskledger serve`` processes for tests that cross a process boundary: start one on a
free port, wait until it answers (never a fixed sleep), stop it, and read what it logged."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest

#: How long a condition may take on a loaded machine before a test gives up on it.
DEADLINE = 90.0

#: A line of a server's log that shows a fault: a 5xx answered (uvicorn's access log), a record
#: at ERROR or above (an exception the scheduler caught, say), or a traceback.
FAULT = re.compile(r'HTTP/[\d.]+" 5\d\d\b| (?:ERROR|CRITICAL) |^Traceback ', re.MULTILINE)

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours without any TASKLEDGER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.pop("ADMIN_API_KEY", None)
    env.update(extra)
    return env


def server_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A server's environment: its database, a data dir and an archive root under ``tmp_path``."""
    return clean_env(
        TASKLEDGER_DATABASE_URL=database_url,
        TASKLEDGER_DATA_DIR=str(tmp_path / "data"),
        TASKLEDGER_ARCHIVE_URL=str(tmp_path / "archives"),
        **extra,
    )


def wait_until(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float = DEADLINE,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    ``alive`` is called before each poll and may fail the test early (a process that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


@dataclass
class Server:
    """One running ``taskledger serve``."""

    process: subprocess.Popen[str]
    url: str
    log: IO[str]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited early ({self.process.returncode}):\n{self.output()}")

    def output(self) -> str:
        """Everything the server has logged so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def faults(self) -> list[str]:
        """The lines of its log that show a fault (see ``FAULT``): none, in a healthy run."""
        return [line for line in self.output().splitlines() if FAULT.search(line)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False


@contextmanager
def serving(
    env: dict[str, str],
    *,
    migrate: bool = False,
    cwd: Path | None = None,
    port: int | None = None,
    **popen: Any,
) -> Iterator[Server]:
    """Start ``taskledger serve`` with ``env`` on ``port`` (default: a free one) and wait until
    it is ready."""
    port = port or free_port()
    command = [sys.executable, "-m", "taskledger", "serve", "--port", str(port)]
    if not migrate:
        command.append("--no-migrate")
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        server = Server(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_until(server.ready, "the server to be ready", alive=server.check_alive)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
