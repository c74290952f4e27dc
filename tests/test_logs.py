"""Log formats: JSON lines carry the message and the ``extra`` fields."""

from __future__ import annotations

import json
import logging

from taskledger.logs import JsonFormatter


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
