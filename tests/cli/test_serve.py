"""``taskledger serve`` as a real process: migrates a new SQLite database, then answers."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from taskledger.api import create_app
from taskledger.settings import Settings
from taskledger.store import make_engine, migrate
from tests.serving import DEADLINE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[str], timeout: float = DEADLINE) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early: {process.communicate()[1]}")
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def test_serve_on_a_fresh_data_dir(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env["TASKLEDGER_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "taskledger", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", process).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=DEADLINE)
    data = tmp_path / "data"
    password_file = data / "initial_admin_password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    # Nobody else on the machine may read the database or the secrets beside it.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    database = data / "taskledger.db"
    for path in (database, *data.glob("taskledger.db-*")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = password_file.read_text().strip()
    assert stderr.count(password) == 1  # printed once, at first start
    engine = make_engine(f"sqlite:///{data / 'taskledger.db'}")
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_server_start_warns_when_both_admin_key_variables_differ(
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first name wins, so a caller holding the other key gets 403: said at start."""
    monkeypatch.setenv("TASKLEDGER_ADMIN_API_KEY", "the-new-key-0123456789")
    monkeypatch.setenv("ADMIN_API_KEY", "the-seed-key-0123456789")
    with caplog.at_level(logging.WARNING, logger="taskledger"):
        create_app(Settings(_env_file=None), engine=engine)  # type: ignore[call-arg]
    [record] = [r for r in caplog.records if "ADMIN_API_KEY" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "only TASKLEDGER_ADMIN_API_KEY is accepted" in record.getMessage()
    assert "0123456789" not in record.getMessage()
    caplog.clear()
    monkeypatch.setenv("ADMIN_API_KEY", "the-new-key-0123456789")
    with caplog.at_level(logging.WARNING, logger="taskledger"):
        create_app(Settings(_env_file=None), engine=engine)  # type: ignore[call-arg]
    assert not [r for r in caplog.records if "ADMIN_API_KEY" in r.getMessage()]
