"""Retention policies: preset numbers, TOML parsing, validation messages, hash and dict form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from taskledger.api.errors import HTTP_STATUS
from taskledger.errors import ValidationFailed
from taskledger.retention.policy.load import load_policy, parse_policy, policy_from_dict
from taskledger.retention.policy.presets import (
    PRESETS,
    default_policy,
    development_policy,
    ops_policy,
    scientific_policy,
)
from taskledger.retention.policy.rules import (
    RULE_KEYS,
    Action,
    Policy,
    PolicyError,
    Rule,
    format_duration,
    parse_duration,
    policy_to_dict,
    validate_policy,
)

D = timedelta(days=1)
H = timedelta(hours=1)
TERMINAL_RUNS = ("completed", "failed", "cancelled")
TERMINAL_INSTRUCTIONS = ("completed", "failed", "expired")
ENDED_SESSIONS = ("completed", "terminated", "error")


def summary(policy: Policy) -> list[tuple[Any, ...]]:
    """Each rule as (table, older_than, age_column, statuses, action, has_acks, audit, archive)."""
    return [
        (
            r.table,
            r.older_than,
            r.age_column,
            r.statuses,
            r.action,
            r.has_acknowledgements,
            r.allow_audit_deletion,
            r.archive,
        )
        for r in policy.rules
    ]


def standard(runs: timedelta, conns: timedelta, instr: timedelta, sess: timedelta) -> list[Any]:
    return [
        ("runs", runs, "started_at", TERMINAL_RUNS, "delete", None, False, True),
        ("agent_connections", conns, "last_heartbeat_at", ("active",), "expire", None, False, True),
        ("instructions", instr, "created_at", TERMINAL_INSTRUCTIONS, "scrub", True, False, True),
        ("instructions", instr, "created_at", TERMINAL_INSTRUCTIONS, "delete", False, False, True),
        ("agent_sessions", sess, "ended_at", ENDED_SESSIONS, "scrub", None, False, True),
    ]


def rule_toml(name: str = "r", **keys: Any) -> str:
    """A one-rule policy; ``keys`` are TOML values written as Python literals."""
    body = {"table": "runs", "older_than": "90d", "action": "delete", **keys}
    lines = [f'name = "{name}"'] + [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    return "[[rule]]\n" + "\n".join(lines) + "\n"


def errors_of(text: str) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, default_name="test")
    return caught.value.errors


# --- presets --------------------------------------------------------------------------------------


def test_preset_names() -> None:
    assert set(PRESETS) == {"default", "development", "scientific", "ops"}
    for name, policy in PRESETS.items():
        assert policy.name == name
        assert load_policy(name) is policy
        assert validate_policy(policy) is policy


def test_preset_functions_build_the_registered_presets() -> None:
    assert default_policy() == PRESETS["default"]
    assert development_policy() == PRESETS["development"]
    assert scientific_policy() == PRESETS["scientific"]
    assert ops_policy() == PRESETS["ops"]


def test_default_preset() -> None:
    policy = PRESETS["default"]
    assert summary(policy) == standard(90 * D, 24 * H, 30 * D, 90 * D)
    assert (policy.batch_size, policy.max_rows_per_run, policy.max_table_fraction) == (
        10_000,
        1_000_000,
        0.5,
    )
    assert policy.batch_time_budget == timedelta(milliseconds=100)
    assert "acknowledgements" not in {r.table for r in policy.rules}  # the audit trail is kept


def test_development_preset() -> None:
    policy = PRESETS["development"]
    assert summary(policy) == [
        *standard(14 * D, 4 * H, 7 * D, 14 * D),
        ("acknowledgements", 30 * D, "created_at", None, "delete", None, True, True),
    ]
    assert policy.batch_size == 10_000


def test_scientific_preset() -> None:
    policy = PRESETS["scientific"]
    assert summary(policy) == standard(730 * D, 48 * H, 365 * D, 730 * D)
    assert policy.batch_size == 500
    assert policy.batch_time_budget == timedelta(milliseconds=100)
    assert "acknowledgements" not in {r.table for r in policy.rules}


def test_ops_preset_is_per_status_run_retention() -> None:
    policy = PRESETS["ops"]
    assert [(r.name, r.statuses, r.older_than) for r in policy.rules] == [
        ("runs-completed", ("completed",), 7 * D),
        ("runs-failed", ("failed",), 30 * D),
        ("runs-cancelled", ("cancelled",), 3 * D),
    ]
    assert {(r.table, r.action, r.age_column) for r in policy.rules} == {
        ("runs", "delete", "started_at")
    }


def test_every_preset_archives_and_no_preset_touches_acknowledgements_but_development() -> None:
    for name, policy in PRESETS.items():
        assert all(rule.archive for rule in policy.rules)
        deletes_acks = any(r.table == "acknowledgements" for r in policy.rules)
        assert deletes_acks == (name == "development")


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", 90 * D), ("36h", 36 * H), ("90m", timedelta(minutes=90)), ("3600s", H), ("0d", 0 * D)],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["90", "d", "1.5h", "-1d", " 90d", "90d ", "90D", "1w", "9 0d", ""]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="integer followed by s, m, h or d"):
        parse_duration(text)


def test_parse_duration_rejects_what_timedelta_cannot_hold() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999999999999d")


@pytest.mark.parametrize(
    ("value", "text"),
    [(90 * D, "90d"), (36 * H, "36h"), (48 * H, "2d"), (timedelta(minutes=90), "90m"),
     (timedelta(seconds=3601), "3601s"), (timedelta(0), "0s")],
)  # fmt: skip
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_format_duration_refuses_fractions_and_negatives() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(milliseconds=1500))
    with pytest.raises(ValueError):
        format_duration(-D)


# --- parsing --------------------------------------------------------------------------------------


def test_parse_the_spec_example() -> None:
    text = """
    [[rule]]
    name = "old-runs"              # unique in the policy
    table = "runs"
    older_than = "90d"             # s, m, h, d; minimum 1h
    age_column = "started_at"
    status = ["completed", "failed", "cancelled"]
    projects = ["alpha", "beta"]
    action = "delete"
    archive = true
    """
    policy = parse_policy(textwrap.dedent(text), default_name="mine")
    assert policy == Policy(
        name="mine",
        rules=(
            Rule(
                name="old-runs",
                table="runs",
                older_than=90 * D,
                statuses=TERMINAL_RUNS,
                projects=("alpha", "beta"),
                action="delete",
            ),
        ),
    )


def test_defaults_are_filled_in() -> None:
    policy = parse_policy(rule_toml(), default_name="p")
    assert (policy.name, policy.batch_size, policy.max_rows_per_run) == ("p", 10_000, 1_000_000)
    assert policy.max_table_fraction == 0.5
    assert policy.batch_time_budget == timedelta(milliseconds=100)
    (rule,) = policy.rules
    assert rule.age_column == "started_at"
    assert rule.archive is True
    assert rule.allow_audit_deletion is False
    assert (rule.statuses, rule.projects, rule.has_acknowledgements, rule.batch_size) == (
        None,
        None,
        None,
        None,
    )
    assert policy.batch_size_for(rule) == 10_000


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("100ms", timedelta(milliseconds=100)),
        ("10ms", timedelta(milliseconds=10)),
        ("250ms", timedelta(milliseconds=250)),
        ("1s", timedelta(seconds=1)),
        ("5s", timedelta(seconds=5)),
        ("5000ms", timedelta(seconds=5)),
    ],
)
def test_batch_time_budget_is_read(text: str, budget: timedelta) -> None:
    policy = parse_policy(f'batch_time_budget = "{text}"\n' + rule_toml(), default_name="p")
    assert policy.batch_time_budget == budget
    assert policy_from_dict(policy_to_dict(policy), default_name="p") == policy


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"0ms"', "'batch_time_budget' must be between 10ms and 5s, got '0ms'"),
        ('"9ms"', "'batch_time_budget' must be between 10ms and 5s, got '9ms'"),
        ('"6s"', "'batch_time_budget' must be between 10ms and 5s, got '6s'"),
        ('"5001ms"', "'batch_time_budget' must be between 10ms and 5s, got '5001ms'"),
        ("100", "'batch_time_budget' must be a string with its unit, like '100ms' or '1s', "
         "got integer 100"),
        ("0.1", "'batch_time_budget' must be a string with its unit"),
        ('"100"', "'batch_time_budget' must be an integer followed by ms or s"),
        ('"1.5s"', "'batch_time_budget' must be an integer followed by ms or s"),
        ('"-5ms"', "'batch_time_budget' must be an integer followed by ms or s"),
        ('"100 ms"', "'batch_time_budget' must be an integer followed by ms or s"),
        ('"1m"', "'batch_time_budget' must be an integer followed by ms or s"),
        ('"9' + "9" * 30 + 's"', "is too long"),
    ],
)  # fmt: skip
def test_a_bad_batch_time_budget_is_refused(value: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(problem)):
        parse_policy(f"batch_time_budget = {value}\n" + rule_toml(), default_name="p")


def test_a_batch_time_budget_built_in_code_is_checked() -> None:
    policy = Policy(name="p", batch_time_budget=timedelta(seconds=10))
    with pytest.raises(PolicyError, match="'batch_time_budget' must be between 10ms and 5s"):
        validate_policy(policy)


def test_top_level_settings_are_read() -> None:
    text = 'name = "nightly"\nbatch_size = 250\nmax_rows_per_run = 5000\nmax_table_fraction = 1\n'
    policy = parse_policy(text + rule_toml(batch_size=10), default_name="ignored")
    assert (policy.name, policy.batch_size, policy.max_rows_per_run) == ("nightly", 250, 5000)
    assert policy.max_table_fraction == 1.0
    assert policy.batch_size_for(policy.rules[0]) == 10


def test_archive_false_is_kept_when_explicit() -> None:
    (rule,) = parse_policy(rule_toml(archive=False), default_name="p").rules
    assert rule.archive is False


def test_a_policy_without_rules_is_a_valid_no_op() -> None:
    assert parse_policy("", default_name="empty") == Policy(name="empty")
    assert parse_policy("# nothing yet\n", default_name="empty").rules == ()


def test_statuses_and_projects_are_normalised() -> None:
    (rule,) = parse_policy(
        rule_toml(status=["cancelled", "completed", "cancelled"], projects=["b", "a", "b"]),
        default_name="p",
    ).rules
    assert rule.statuses == ("completed", "cancelled")  # vocabulary order, no duplicates
    assert rule.projects == ("a", "b")


def test_rule_cutoff() -> None:
    rule = PRESETS["default"].rules[0]
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert rule.cutoff(now) == datetime(2026, 3, 3, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        rule.cutoff(datetime(2026, 6, 1))


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"table": "runz"}, "unknown table 'runz' (expected one of: tasks, runs,"),
        ({"age_column": "finished"}, "unknown age column 'finished' for table 'runs'"),
        ({"age_column": "due_date", "table": "tasks"}, "unknown age column 'due_date'"),
        ({"status": ["done"]}, "unknown status 'done' for table 'runs' (expected one of: queued"),
        ({"table": "acknowledgements", "status": ["active"], "allow_audit_deletion": True},
         "unknown status 'active' for table 'acknowledgements'"),
        ({"status": []}, "'status' must not be empty"),
        ({"projects": []}, "'projects' must be a non-empty list"),
        ({"projects": [" "]}, "'projects' must be a non-empty list"),
        ({"older_than": "90"}, "'older_than' must be an integer followed by s, m, h or d"),
        ({"older_than": "90 days"}, "got '90 days'"),
        ({"older_than": "59m"}, "'older_than' must be at least 1h, got '59m'"),
        ({"older_than": "3599s"}, "'older_than' must be at least 1h, got '3599s'"),
        ({"older_than": "36501d"}, "'older_than' must be at most 36500d"),
        ({"action": "purge"}, "unknown action 'purge' (expected one of: delete, scrub, expire)"),
        ({"table": "tasks", "action": "scrub"}, "action 'scrub' is not available for table"),
        ({"table": "acknowledgements", "action": "scrub", "allow_audit_deletion": True},
         "only for: runs, agent_sessions, instructions"),
        ({"action": "expire"}, "action 'expire' is not available for table 'runs' (only for:"),
        ({"table": "agent_connections", "action": "expire", "status": ["active", "closed"]},
         "status 'closed' cannot be expired on table 'agent_connections'"),
        ({"table": "instructions", "action": "expire", "status": ["completed"]},
         "(expire applies to: pending, sent)"),
        ({"table": "acknowledgements"}, "deleting acknowledgements removes the audit trail"),
        ({"table": "instructions"}, "deleting instructions also deletes their acknowledgements"),
        ({"table": "instructions", "has_acknowledgements": True},
         "set has_acknowledgements = false"),
        ({"has_acknowledgements": False}, "'has_acknowledgements' applies only to table"),
        ({"batch_size": 0}, "'batch_size' must be between 1 and 100000, got 0"),
        ({"batch_size": 100_001}, "'batch_size' must be between 1 and 100000"),
        ({"colour": "red"}, "unknown key 'colour' (expected one of: name, table,"),
        ({"older_than": 90}, "'older_than' must be a string, got integer 90"),
        ({"archive": "no"}, "'archive' must be a boolean, got string 'no'"),
        ({"status": "completed"}, "'status' must be an array of strings"),
        ({"projects": [1]}, "'projects' must be an array of strings"),
        ({"batch_size": True}, "'batch_size' must be an integer, got boolean"),
        ({"batch_size": 1.5}, "'batch_size' must be an integer, got float 1.5"),
        ({"table": 3}, "'table' must be a string, got integer 3"),
    ],
)  # fmt: skip
def test_each_rule_error_names_the_rule_and_the_problem(keys: dict[str, Any], problem: str) -> None:
    errors = errors_of(rule_toml("old-runs", **keys))
    assert len(errors) == 1, errors
    assert errors[0].startswith("rule 'old-runs': ")
    assert problem in errors[0]


@pytest.mark.parametrize(
    ("keys", "table"),
    [
        ({"table": "acknowledgements", "allow_audit_deletion": True}, "acknowledgements"),
        ({"table": "instructions", "has_acknowledgements": False}, "instructions"),
        ({"table": "instructions", "allow_audit_deletion": True}, "instructions"),
        ({"table": "agent_connections", "action": "expire"}, "agent_connections"),
        ({"table": "instructions", "action": "expire", "status": ["sent"]}, "instructions"),
        (
            {"table": "instructions", "action": "scrub", "has_acknowledgements": True},
            "instructions",
        ),
        ({"older_than": "1h", "age_column": "finished_at"}, "runs"),
        ({"older_than": "3600s", "table": "tasks"}, "tasks"),
    ],
)
def test_valid_rules_pass(keys: dict[str, Any], table: str) -> None:
    (rule,) = parse_policy(rule_toml(**keys), default_name="p").rules
    assert rule.table == table


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nmae = 'x'\n", "unknown top-level key 'nmae' (expected one of: name, batch_size,"),
        ("name = 3\n", "'name' must be a string, got integer 3"),
        ("name = ''\n", "policy 'name' must be a non-empty string"),
        ("batch_size = 0\n", "'batch_size' must be between 1 and 100000, got 0"),
        ("batch_size = '10'\n", "'batch_size' must be an integer, got string '10'"),
        ("max_rows_per_run = 0\n", "'max_rows_per_run' must be at least 1, got 0"),
        ("max_table_fraction = 0\n", "'max_table_fraction' must be greater than 0 and at most 1"),
        ("max_table_fraction = 1.5\n", "got 1.5"),
        ("max_table_fraction = true\n", "'max_table_fraction' must be an integer or float"),
        ("rule = 1\n", "'rule' must be an array, got integer 1"),
        ("rule = [1]\n", "rule #1: must be a table, got integer 1"),
    ],
)
def test_each_policy_error(text: str, problem: str) -> None:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    assert problem in errors[0]


def test_missing_required_keys_are_named() -> None:
    errors = errors_of('[[rule]]\ntable = "runs"\n')
    assert errors == (
        "rule #1: missing required key 'name'",
        "rule #1: missing required key 'older_than'",
        "rule #1: missing required key 'action'",
    )


def test_duplicate_rule_names() -> None:
    errors = errors_of(rule_toml("twice") + rule_toml("twice", older_than="30d"))
    assert errors == ("rule 'twice': duplicate rule name (rule names must be unique in a policy)",)


@pytest.mark.parametrize("name", ["has space", "-leading", "x" * 65, "é"])
def test_rule_names_must_be_plain(name: str) -> None:
    (error,) = errors_of(rule_toml(name))
    assert error == (
        f"rule {name!r}: invalid rule name (use up to 64 letters, digits, '-', '_' or '.', "
        "starting with a letter or digit)"
    )


def test_every_error_is_reported_in_one_pass_in_rule_order() -> None:
    text = (
        "batch_size = 0\n"
        + rule_toml("first", table="runz")
        + rule_toml("second", older_than="5m", action="expire")
        + rule_toml("third", table="acknowledgements")
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, default_name="p")
    errors = caught.value.errors
    assert [e.split(":")[0] for e in errors] == [
        "'batch_size' must be between 1 and 100000, got 0",
        "rule 'first'",
        "rule 'second'",
        "rule 'second'",
        "rule 'third'",
    ]
    assert "at least 1h" in errors[2] and "'expire' is not available" in errors[3]
    assert caught.value.detail == "; ".join(errors)
    assert str(caught.value) == "; ".join(errors)


def test_semantics_are_checked_even_when_a_key_has_the_wrong_type() -> None:
    errors = errors_of(rule_toml("r", table="runz", archive="yes"))
    assert errors == (
        "rule 'r': 'archive' must be a boolean, got string 'yes'",
        "rule 'r': unknown table 'runz' (expected one of: tasks, runs, agent_sessions, "
        "agent_connections, instructions, acknowledgements)",
    )


def test_policy_error_is_a_422_validation_error() -> None:
    error = PolicyError(["a", "b"])
    assert isinstance(error, ValidationFailed)
    assert HTTP_STATUS[error.kind] == 422
    assert (error.errors, error.detail) == (("a", "b"), "a; b")
    assert PolicyError("only").errors == ("only",)
    assert PolicyError(["x"], source="p.toml").detail == "p.toml: x"


def test_validate_policy_checks_policies_built_in_code() -> None:
    bad = Policy(
        name="code",
        rules=(
            Rule(name="r", table="runs", older_than=timedelta(hours=1, microseconds=5),
                 action="delete"),
            Rule(name="s", table="runs", older_than=D, action=cast(Action, "nuke")),
        ),
        max_table_fraction=0,
    )  # fmt: skip
    with pytest.raises(PolicyError) as caught:
        validate_policy(bad)
    assert caught.value.errors == (
        "'max_table_fraction' must be greater than 0 and at most 1, got 0.0",
        "rule 'r': 'older_than' must be a whole number of seconds, got 1:00:00.000005",
        "rule 's': unknown action 'nuke' (expected one of: delete, scrub, expire)",
    )


def test_invalid_toml_reports_line_and_column() -> None:
    (error,) = errors_of('[[rule]]\nname = "r"\ntable = \n')
    assert error.startswith("invalid TOML: ")
    assert "line 3" in error


# --- loading --------------------------------------------------------------------------------------


def test_load_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "nightly.toml"
    path.write_text(rule_toml("old-runs"), encoding="utf-8")
    policy = load_policy(str(path))
    assert policy.name == "nightly"  # the file's stem, when the file names no policy
    assert [r.name for r in policy.rules] == ["old-runs"]
    path.write_text('name = "named"\n' + rule_toml("old-runs"), encoding="utf-8")
    assert load_policy(str(path)).name == "named"


def test_load_policy_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(rule_toml("old-runs", table="runz"), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: rule 'old-runs': unknown table 'runz'")


def test_load_policy_neither_preset_nor_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"unknown policy 'defualt': not a preset \(default, "):
        load_policy("defualt")
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(str(tmp_path / "missing.toml"))
    with pytest.raises(PolicyError, match="unknown policy ''"):
        load_policy("")


def test_load_policy_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(str(tmp_path))  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'name = "\xff"\n')
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(str(binary))


def test_load_policy_reports_toml_syntax_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n\n[[rule]\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"broken\.toml: invalid TOML: .*line 3"):
        load_policy(str(path))


def test_a_preset_name_wins_over_a_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "default").write_text(rule_toml("mine"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_policy("default") is PRESETS["default"]
    assert [r.name for r in load_policy("./default").rules] == ["mine"]


# --- dict form and hash ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_form_round_trips(name: str) -> None:
    policy = PRESETS[name]
    data = policy_to_dict(policy)
    assert policy_from_dict(data, default_name="other") == policy
    # ...and survives JSON, as in the audit log and --json output.
    assert policy_from_dict(json.loads(json.dumps(data)), default_name="other") == policy


def test_dict_form_of_a_rule_with_every_key() -> None:
    text = rule_toml(
        "full",
        table="instructions",
        older_than="36h",
        age_column="expires_at",
        status=["sent"],
        projects=["p"],
        action="expire",
        archive=False,
        allow_audit_deletion=True,
        has_acknowledgements=False,
        batch_size=7,
    )
    policy = parse_policy(text, default_name="p")
    (rule,) = policy_to_dict(policy)["rule"]
    assert tuple(rule) == RULE_KEYS
    assert rule == {
        "name": "full",
        "table": "instructions",
        "older_than": "36h",
        "age_column": "expires_at",
        "status": ["sent"],
        "projects": ["p"],
        "action": "expire",
        "archive": False,
        "allow_audit_deletion": True,
        "has_acknowledgements": False,
        "batch_size": 7,
    }
    assert policy_from_dict(policy_to_dict(policy), default_name="x") == policy


def test_hash_is_a_sha256_hex_digest() -> None:
    digest = PRESETS["default"].policy_hash
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert len({p.policy_hash for p in PRESETS.values()}) == len(PRESETS)


def test_hash_is_stable_across_processes() -> None:
    code = (
        "from taskledger.retention.policy.presets import PRESETS\n"
        "print(' '.join(PRESETS[n].policy_hash for n in sorted(PRESETS)))\n"
    )
    hashes = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        hashes.add(result.stdout.strip())
    assert hashes == {" ".join(PRESETS[n].policy_hash for n in sorted(PRESETS))}


def test_hash_of_the_default_preset_is_pinned() -> None:
    # Audit rows and plan ids record this hash: changing the canonical form (or the preset) must
    # be a deliberate decision, made by updating this value.
    assert PRESETS["default"].policy_hash == (
        "ff0b95ea45d7e8a5cd2e09ce9e6ba158c3ab1fa1921ea5954463303c77131cca"
    )


BASE = 'name = "p"\n' + rule_toml("a", status=["completed", "failed"]) + rule_toml("b")


@pytest.mark.parametrize(
    "same",
    [
        "# a comment\n\n" + BASE.replace(" = ", "   =   "),
        'name = "p"\n' + rule_toml("a", status=["failed", "completed", "failed"]) + rule_toml("b"),
        'name = "p"\n'
        + rule_toml("a", status=["completed", "failed"], age_column="started_at", archive=True)
        + rule_toml("b", allow_audit_deletion=False),
        'batch_size = 10000\nbatch_time_budget = "100ms"\nmax_table_fraction = 0.5\n'
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"]) + rule_toml("b"),
        'name = "p"\n'
        + rule_toml("a", status=["completed", "failed"], older_than="2160h")
        + rule_toml("b"),
    ],
)
def test_hash_ignores_layout_order_of_keys_and_spelled_out_defaults(same: str) -> None:
    assert (
        parse_policy(same, default_name="x").policy_hash
        == parse_policy(BASE, default_name="x").policy_hash
    )


@pytest.mark.parametrize(
    "different",
    [
        'name = "q"\n' + rule_toml("a", status=["completed", "failed"]) + rule_toml("b"),
        'name = "p"\n' + rule_toml("b") + rule_toml("a", status=["completed", "failed"]),
        'name = "p"\n' + rule_toml("a", status=["completed"]) + rule_toml("b"),
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"], older_than="91d")
        + rule_toml("b"),
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"], archive=False)
        + rule_toml("b"),
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"], action="scrub")
        + rule_toml("b"),
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"], projects=["x"])
        + rule_toml("b"),
        'name = "p"\nbatch_size = 999\n' + rule_toml("a", status=["completed", "failed"])
        + rule_toml("b"),
        'name = "p"\nmax_table_fraction = 0.6\n' + rule_toml("a", status=["completed", "failed"])
        + rule_toml("b"),
        'name = "p"\nbatch_time_budget = "200ms"\n'
        + rule_toml("a", status=["completed", "failed"]) + rule_toml("b"),
        'name = "p"\n' + rule_toml("a", status=["completed", "failed"], batch_size=5)
        + rule_toml("b"),
    ],
)  # fmt: skip
def test_hash_changes_with_anything_that_changes_behaviour(different: str) -> None:
    assert (
        parse_policy(different, default_name="x").policy_hash
        != parse_policy(BASE, default_name="x").policy_hash
    )


# --- documentation -------------------------------------------------------------------------------

RETENTION_DOC = Path(__file__).resolve().parents[3] / "docs" / "retention.md"


def test_the_documented_examples_behave_as_documented() -> None:
    text = RETENTION_DOC.read_text(encoding="utf-8")
    example, invalid, caps = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert [r.name for r in parse_policy(example, default_name="nightly").rules] == [
        "old-runs",
        "stale-connections",
    ]
    with pytest.raises(PolicyError) as caught:
        parse_policy(invalid, default_name="x")
    assert "\n".join(caught.value.errors) in text
    capped = parse_policy(caps + rule_toml("r"), default_name="capped")
    assert (capped.max_rows_per_run, capped.max_table_fraction) == (200_000, 0.3)


def test_every_preset_rule_is_in_the_documented_table() -> None:
    rows = [
        line.split("|")[1:-1]
        for line in RETENTION_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    columns = {"default": 4, "development": 5, "scientific": 6, "ops": 7}
    # The presets table is the one with eight columns: rule, table, matches, action, 4 presets.
    documented = {cells[0].strip().strip("`"): cells for cells in rows if len(cells) == 8}
    assert len(documented) == 9
    for preset, column in columns.items():
        for rule in PRESETS[preset].rules:
            cells = documented[rule.name]
            assert cells[1].strip() == rule.table
            assert cells[3].strip() == rule.action
            documented_age = parse_duration(cells[column].replace(" ", ""))
            assert documented_age == rule.older_than, (preset, rule.name)
        # ...and a rule shown as absent ("—" or "kept") is really absent.
        names = {rule.name for rule in PRESETS[preset].rules}
        for name, cells in documented.items():
            if cells[column].strip() in ("—", "kept"):
                assert name not in names, (preset, name)
