"""Log formats: JSON lines carry the message and the ``extra`` fields; access logs never show a
secret sent in a query string."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx

from taskledger.logs import JsonFormatter, redact_query
from tests.serving import clean_env, serving, wait_until


def test_json_formatter() -> None:
    record = logging.makeLogRecord(
        {
            "name": "taskledger.x",
            "levelname": "WARNING",
            "levelno": 30,
            "msg": "spike: %d rows",
            "args": (5,),
            "rule": "old-runs",
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "spike: 5 rows"
    assert entry["level"] == "WARNING"
    assert entry["rule"] == "old-runs"
    assert entry["time"].endswith("+00:00")


def test_redact_query_hides_secret_looking_values_only() -> None:
    assert redact_query("/x") == "/x"
    assert redact_query("/x?limit=5&since=2025-01-01") == "/x?limit=5&since=2025-01-01"
    assert (
        redact_query("/x?api_key=s1&TOKEN=s2&client_secret=s3&my%20password=s4&keyed&q=key")
        == "/x?api_key=[redacted]&TOKEN=[redacted]&client_secret=[redacted]"
        "&my%20password=[redacted]&keyed&q=key"
    )


def test_the_access_log_of_a_real_server_never_shows_a_secret(tmp_path: Path) -> None:
    env = clean_env(TASKLEDGER_DATA_DIR=str(tmp_path / "data"))
    with serving(env, migrate=True, cwd=tmp_path) as server:
        response = httpx.get(
            f"{server.url}/api/v1/runs",
            params={"api_key": "tl_abc_SECRETVALUE1", "access_token": "SECRET2", "limit": 7},
        )
        assert response.status_code == 401
        wait_until(lambda: "limit=7" in server.output(), "the access log line")
        log = server.output()
    assert "SECRETVALUE1" not in log and "SECRET2" not in log
    assert "api_key=[redacted]&access_token=[redacted]&limit=7" in log
