"""The registry of retained tables agrees with the data model, and the scrub marker is honest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import String

from taskledger.enums import (
    AcknowledgementStatus,
    ConnectionStatus,
    InstructionStatus,
    RunStatus,
    SessionStatus,
    TaskStatus,
    values,
)
from taskledger.retention.policy.tables import (
    TABLES,
    canonical_json,
    get_table,
    is_scrub_marker,
    scrub_marker,
)
from taskledger.store.types import UTCDateTime

ARCHIVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_registry_holds_exactly_the_retainable_tables() -> None:
    assert set(TABLES) == {
        "runs",
        "tasks",
        "agent_sessions",
        "agent_connections",
        "instructions",
        "acknowledgements",
    }
    for name, table in TABLES.items():
        assert table.name == name
        assert table.model.__tablename__ == name
        assert get_table(name) is table
    with pytest.raises(KeyError):
        get_table("retention_runs")  # the audit log is never retained


def test_key_and_project_columns_exist() -> None:
    for table in TABLES.values():
        columns = table.model.__table__.c
        assert columns[table.key_column].primary_key
        assert not columns[table.project_column].nullable


@pytest.mark.parametrize(
    ("name", "default_age_column"),
    [
        ("runs", "started_at"),
        ("tasks", "completed_at"),
        ("agent_sessions", "ended_at"),
        ("agent_connections", "last_heartbeat_at"),
        ("instructions", "created_at"),
        ("acknowledgements", "created_at"),
    ],
)
def test_default_age_columns(name: str, default_age_column: str) -> None:
    table = TABLES[name]
    assert table.default_age_column == default_age_column
    assert table.default_age_column in table.age_columns


def test_every_age_column_is_a_utc_timestamp() -> None:
    for table in TABLES.values():
        for column in table.age_columns:
            assert isinstance(table.model.__table__.c[column].type, UTCDateTime), column
        for column, fallback in table.age_fallbacks.items():
            assert column in table.age_columns
            assert table.model.__table__.c[column].nullable
            assert not table.model.__table__.c[fallback].nullable


def test_only_a_silent_connection_ages_from_its_opening() -> None:
    assert TABLES["agent_connections"].age_fallbacks == {"last_heartbeat_at": "created_at"}
    # An empty ended_at or completed_at means "not finished": such rows must never age.
    assert {n for n, t in TABLES.items() if t.age_fallbacks} == {"agent_connections"}


@pytest.mark.parametrize(
    ("name", "enum"),
    [
        ("runs", RunStatus),
        ("tasks", TaskStatus),
        ("agent_sessions", SessionStatus),
        ("agent_connections", ConnectionStatus),
        ("instructions", InstructionStatus),
        ("acknowledgements", AcknowledgementStatus),
    ],
)
def test_statuses_are_the_table_vocabulary(name: str, enum: type) -> None:
    assert TABLES[name].statuses == tuple(values(enum))


def test_scrub_fields() -> None:
    assert {name: t.scrub_fields for name, t in TABLES.items() if t.can_scrub} == {
        "runs": ("inputs", "log_excerpt"),
        "instructions": ("payload",),
        "agent_sessions": ("experimental_parameters",),
    }
    for name in ("tasks", "agent_connections", "acknowledgements"):
        assert TABLES[name].scrub_fields == ()
        assert not TABLES[name].can_scrub


def test_only_log_excerpt_is_a_text_scrub_field() -> None:
    text_fields = {
        (table.name, field)
        for table in TABLES.values()
        for field in table.scrub_fields
        if table.is_text_field(field)
    }
    assert text_fields == {("runs", "log_excerpt")}


def test_expire_specs() -> None:
    connections = TABLES["agent_connections"].expire
    instructions = TABLES["instructions"].expire
    assert connections is not None and instructions is not None
    assert (connections.status, connections.from_statuses) == ("timeout", ("active",))
    assert (connections.timestamp_column, connections.reason_column) == (
        "closed_at",
        "close_reason",
    )
    assert (instructions.status, instructions.from_statuses) == ("expired", ("pending", "sent"))
    assert (instructions.timestamp_column, instructions.reason_column) == (None, None)
    assert {n for n, t in TABLES.items() if t.can_expire} == {"agent_connections", "instructions"}
    for table in (TABLES["agent_connections"], TABLES["instructions"]):
        assert table.expire is not None
        assert table.expire.status in table.statuses
        assert table.expire.status not in table.expire.from_statuses
        assert set(table.expire.from_statuses) <= set(table.statuses)


def test_expire_values_for_a_connection() -> None:
    now = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    changes = TABLES["agent_connections"].expire_values(now, "no heartbeat for 24h")
    assert changes == {
        "status": "timeout",
        "closed_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        "close_reason": "no heartbeat for 24h",
    }
    assert changes["closed_at"].utcoffset() == timedelta(0)


def test_expire_reason_is_cut_to_the_column_width() -> None:
    column_type = TABLES["agent_connections"].model.__table__.c["close_reason"].type
    assert isinstance(column_type, String)
    width = column_type.length
    changes = TABLES["agent_connections"].expire_values(ARCHIVED_AT, "x" * 1000)
    assert len(changes["close_reason"]) == width == 255


def test_expire_values_for_an_instruction_set_only_the_status() -> None:
    assert TABLES["instructions"].expire_values(ARCHIVED_AT, "old") == {"status": "expired"}


def test_expire_values_refuse_tables_that_cannot_expire_and_naive_times() -> None:
    with pytest.raises(ValueError, match="'runs' cannot expire"):
        TABLES["runs"].expire_values(ARCHIVED_AT, "old")
    with pytest.raises(ValueError, match="timezone-aware"):
        TABLES["agent_connections"].expire_values(datetime(2026, 3, 1), "old")


def test_parents_match_the_foreign_keys() -> None:
    for table in TABLES.values():
        declared = {(p.column, p.table, p.nullable) for p in table.parents}
        actual = {
            (fk.parent.name, fk.column.table.name, bool(fk.parent.nullable))
            for fk in table.model.__table__.foreign_keys
        }
        assert declared == actual, table.name


def test_canonical_json_ignores_key_order_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_scrub_marker_has_exactly_the_three_keys() -> None:
    marker = scrub_marker({"prompt": "hello"}, ARCHIVED_AT)
    assert marker == {
        "archived": True,
        "archived_at": "2026-03-01T12:00:00+00:00",
        "original_size": len('{"prompt":"hello"}'),
    }


def test_scrub_marker_records_the_original_size_not_its_own() -> None:
    big = {"parameters": list(range(1000))}
    marker = scrub_marker(big, ARCHIVED_AT)
    assert marker["original_size"] == len(json.dumps(big, separators=(",", ":")))
    assert marker["original_size"] > len(canonical_json(marker))
    small = scrub_marker({}, ARCHIVED_AT)
    assert small["original_size"] == 2  # "{}", not the size of the marker that replaces it


@pytest.mark.parametrize(
    ("original", "size"),
    [
        ("é", 4),  # '"é"': two quotes and two UTF-8 bytes
        ("日本", 8),  # two three-byte characters and two quotes
        ({"k": "😀"}, 12),  # '{"k":"😀"}': eight ASCII bytes and a four-byte emoji
        ("plain", 7),
        (12345, 5),
        (None, 4),
    ],
)
def test_scrub_marker_counts_utf8_bytes(original: object, size: int) -> None:
    assert scrub_marker(original, ARCHIVED_AT)["original_size"] == size


def test_scrub_marker_size_does_not_depend_on_key_order() -> None:
    first = scrub_marker({"a": 1, "b": "ü"}, ARCHIVED_AT)
    second = scrub_marker({"b": "ü", "a": 1}, ARCHIVED_AT)
    assert first == second


def test_scrub_marker_writes_utc_and_refuses_naive_times() -> None:
    local = datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert scrub_marker(1, local)["archived_at"] == "2026-03-01T12:00:00+00:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        scrub_marker(1, datetime(2026, 3, 1))


def test_scrub_marker_refuses_values_that_are_not_json() -> None:
    with pytest.raises(TypeError):
        scrub_marker({"when": ARCHIVED_AT}, ARCHIVED_AT)


def test_scrub_values_of_a_run() -> None:
    row = {"inputs": {"prompt": "héllo"}, "log_excerpt": "Traceback: boom"}
    changes = TABLES["runs"].scrub_values(row, ARCHIVED_AT)
    assert changes["inputs"] == scrub_marker(row["inputs"], ARCHIVED_AT)
    # The text column holds the marker's JSON text, which reads back as the same marker.
    assert isinstance(changes["log_excerpt"], str)
    assert json.loads(changes["log_excerpt"]) == scrub_marker(row["log_excerpt"], ARCHIVED_AT)
    assert json.loads(changes["log_excerpt"])["original_size"] == len('"Traceback: boom"')


def test_scrub_values_leave_empty_and_already_scrubbed_fields_alone() -> None:
    runs = TABLES["runs"]
    assert runs.scrub_values({"inputs": None, "log_excerpt": None}, ARCHIVED_AT) == {}
    first = runs.scrub_values({"inputs": [1, 2, 3], "log_excerpt": "text"}, ARCHIVED_AT)
    later = ARCHIVED_AT + timedelta(days=1)
    assert runs.scrub_values(first, later) == {}  # the first marker keeps the true size
    sessions = TABLES["agent_sessions"]
    assert sessions.scrub_values({"experimental_parameters": {"t": 1}}, ARCHIVED_AT) == {
        "experimental_parameters": scrub_marker({"t": 1}, ARCHIVED_AT)
    }


def test_scrub_values_on_a_table_without_scrub_fields_change_nothing() -> None:
    assert TABLES["tasks"].scrub_values({}, ARCHIVED_AT) == {}


def test_is_scrub_marker() -> None:
    marker = scrub_marker("x", ARCHIVED_AT)
    assert is_scrub_marker(marker)
    assert is_scrub_marker(canonical_json(marker))
    assert not is_scrub_marker({"archived": True, "archived_at": "2026-03-01T12:00:00+00:00"})
    assert not is_scrub_marker({**marker, "archived": "yes"})
    assert not is_scrub_marker({**marker, "extra": 1})
    assert not is_scrub_marker("{not json")
    assert not is_scrub_marker("archived")
    assert not is_scrub_marker(None)
    assert not is_scrub_marker([marker])
