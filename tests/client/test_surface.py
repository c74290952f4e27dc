"""The client's public surface (as httpx's ``tests/test_exported_members.py`` checks its own),
its independence from the server's code, its configuration from the environment, and the
spool's bounds, against a port where nothing listens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import taskledger.client as client
from taskledger.client import Ledger, LedgerError, SpoolFull
from taskledger.client.spool import Spool
from tests.serving import free_port, wait_until


def test_all_exports() -> None:
    exported = set(client.__all__)
    public = {name for name in dir(client) if not name.startswith("_")}
    modules = {"aledger", "aresources", "buffer", "errors", "heartbeat", "ledger", "resources"}
    modules |= {"run", "spool", "annotations"}  # submodules, and `from __future__`
    assert exported == public - modules
    assert sorted(client.__all__) == client.__all__
    for name in client.__all__:
        assert getattr(client, name).__module__.startswith("taskledger.client")


def test_the_client_imports_no_server_code() -> None:
    code = "import sys, json, taskledger.client\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    forbidden = ("taskledger.api", "taskledger.store", "taskledger.services")
    forbidden += ("taskledger.retention", "sqlalchemy", "fastapi")
    assert [m for m in loaded if m.startswith(forbidden)] == []


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKLEDGER_URL", raising=False)
    with pytest.raises(LedgerError, match="TASKLEDGER_URL"):
        Ledger()
    monkeypatch.setenv("TASKLEDGER_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TASKLEDGER_API_KEY", "tl_abc_def")
    with Ledger() as ledger:
        assert ledger.url == "http://127.0.0.1:9"
        assert ledger._http.headers["Authorization"] == "Bearer tl_abc_def"


def test_spool_files_are_whole_and_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(5):
        spool.append(json.dumps({"runs": [n]}).encode())
    assert len(spool) == 5 and not list(tmp_path.glob(".tmp-*"))
    reopened = Spool(tmp_path)
    assert len(reopened) == 5 and reopened.size == spool.size
    order = []
    while (oldest := reopened.oldest()) is not None:
        order.append(json.loads(oldest[1])["runs"][0])
        reopened.remove(oldest[0])
    assert order == [0, 1, 2, 3, 4] and len(reopened) == 0


@pytest.mark.parametrize("on_full", ["raise", "drop"])
def test_a_full_spool_raises_or_drops(tmp_path: Path, on_full: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails
    ledger = Ledger(
        url,
        "tl_x_y",
        buffer=True,
        flush_at=10,
        flush_interval=0.01,
        spool_dir=str(tmp_path),
        spool_max_bytes=2000,
        on_full=on_full,  # type: ignore[arg-type]
        backoff=0.01,
        max_backoff=0.05,
    )
    full = False

    def record_until_full() -> bool:
        nonlocal full
        try:
            ledger.record(task="t", status="completed")
        except SpoolFull:
            full = True
        return full or ledger.buffer_stats().dropped > 0

    wait_until(record_until_full, "the spool to fill")
    ledger.close(timeout=5)
    stats = ledger.buffer_stats()
    assert stats.spooled_batches >= 1 and stats.sent == 0
    if on_full == "raise":
        assert full and stats.dropped == 0
    else:
        assert not full and stats.dropped > 0
    on_disk = sum(len(json.loads(p.read_bytes())["runs"]) for p in tmp_path.glob("*.batch.json"))
    assert stats.recorded == on_disk and stats.pending == 0  # nothing kept only in memory
