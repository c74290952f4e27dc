"""Where retention policies come from: a preset name or a TOML file, and the dict form.

The entry point for callers (CLI, API, scheduler): ``load_policy("default")`` or
``load_policy("/etc/taskledger/policy.toml")``. The types and checks live in
:mod:`taskledger.retention.policy.rules`, the presets in :mod:`taskledger.retention.policy.presets`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TIME_BUDGET,
    DEFAULT_MAX_ROWS_PER_RUN,
    DEFAULT_MAX_TABLE_FRACTION,
    POLICY_KEYS,
    REQUIRED_RULE_KEYS,
    RULE_KEYS,
    Action,
    Policy,
    PolicyError,
    Rule,
    parse_budget,
    parse_duration,
    policy_level_errors,
    rule_errors,
)
from taskledger.schemas.limits import MAX_JSON_DEPTH, check_json_value

# --- reading -------------------------------------------------------------------------------------

_TOML_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


def parse_policy(text: str, *, default_name: str) -> Policy:
    """Parse and validate a policy written in TOML.

    Args:
        text: The TOML text (see ``docs/retention.md`` for the format).
        default_name: The policy's name when the text sets none (a file's stem, usually).

    Raises:
        PolicyError: The TOML is malformed (the message has line and column), or the policy is
            invalid.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"invalid TOML: nested deeper than {MAX_JSON_DEPTH} levels") from None
    try:
        check_json_value(data)
    except ValueError as exc:
        raise PolicyError(f"invalid policy: {exc}") from None
    return policy_from_dict(data, default_name=default_name)


def policy_from_dict(data: Mapping[str, Any], *, default_name: str) -> Policy:
    """Build and validate a policy from its dict form (parsed TOML, or JSON from the API).

    ``None`` stands for an absent key, so the output of :func:`policy_to_dict` is accepted as is.

    Raises:
        PolicyError: Listing every problem found, top-level ones first, then rule by rule.
    """
    errors = [
        f"unknown top-level key {key!r} (expected one of: {_names(POLICY_KEYS)})"
        for key in data
        if key not in POLICY_KEYS
    ]
    name = _get(data, "name", str, errors, "")
    batch_size = _get(data, "batch_size", int, errors, "")
    budget = DEFAULT_BATCH_TIME_BUDGET
    budget_text = data.get("batch_time_budget")
    if budget_text is not None and not isinstance(budget_text, str):
        # A bare number would leave its unit to guess.
        errors.append(
            "'batch_time_budget' must be a string with its unit, like '100ms' or '1s', "
            f"got {_kind(budget_text)}"
        )
    elif budget_text is not None:
        try:
            budget = parse_budget(budget_text)
        except ValueError as exc:
            errors.append(f"'batch_time_budget' {exc}")
    max_rows = _get(data, "max_rows_per_run", int, errors, "")
    fraction = _get(data, "max_table_fraction", (int, float), errors, "")
    policy = Policy(
        name=default_name if name is None else name,
        batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
        max_rows_per_run=DEFAULT_MAX_ROWS_PER_RUN if max_rows is None else max_rows,
        max_table_fraction=DEFAULT_MAX_TABLE_FRACTION if fraction is None else fraction,
        batch_time_budget=budget,
    )
    errors.extend(policy_level_errors(policy))
    raw_rules = _get(data, "rule", list, errors, "") or []
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, start=1):
        rule, problems = _rule_from_dict(raw, index)
        errors.extend(problems)
        if rule is not None:
            # Checked even when other keys were wrong, so that one pass reports everything.
            errors.extend(rule_errors(rule, seen))
            rules.append(rule)
    if errors:
        raise PolicyError(errors)
    return Policy(
        name=policy.name,
        rules=tuple(rules),
        batch_size=policy.batch_size,
        max_rows_per_run=policy.max_rows_per_run,
        max_table_fraction=policy.max_table_fraction,
        batch_time_budget=policy.batch_time_budget,
    )


def _rule_from_dict(raw: Any, index: int) -> tuple[Rule | None, list[str]]:
    """Check the keys and value types of one ``[[rule]]``.

    Returns:
        The rule, built whenever its required keys are usable (wrongly typed optional keys take
        their defaults), and the problems found. Any problem makes the policy invalid.
    """
    if not isinstance(raw, dict):
        return None, [f"rule #{index}: must be a table, got {_kind(raw)}"]
    name = raw.get("name")
    prefix = f"rule {name!r}: " if isinstance(name, str) and name else f"rule #{index}: "
    errors = [
        f"{prefix}unknown key {key!r} (expected one of: {_names(RULE_KEYS)})"
        for key in raw
        if key not in RULE_KEYS
    ]
    errors += [
        f"{prefix}missing required key {k!r}" for k in REQUIRED_RULE_KEYS if raw.get(k) is None
    ]
    name = _get(raw, "name", str, errors, prefix)
    table = _get(raw, "table", str, errors, prefix)
    older_text = _get(raw, "older_than", str, errors, prefix)
    age_column = _get(raw, "age_column", str, errors, prefix)
    statuses = _get_strings(raw, "status", errors, prefix)
    projects = _get_strings(raw, "projects", errors, prefix)
    action = _get(raw, "action", str, errors, prefix)
    archive = _get(raw, "archive", bool, errors, prefix)
    allow_audit = _get(raw, "allow_audit_deletion", bool, errors, prefix)
    has_acks = _get(raw, "has_acknowledgements", bool, errors, prefix)
    batch_size = _get(raw, "batch_size", int, errors, prefix)
    older_than = None
    if older_text is not None:
        try:
            older_than = parse_duration(older_text)
        except ValueError as exc:
            errors.append(f"{prefix}'older_than' {exc}")
    if name is None or table is None or older_than is None or action is None:
        return None, errors
    rule = Rule(
        name=name,
        table=table,
        older_than=older_than,
        action=cast(Action, action),  # checked against ACTIONS with the other semantics
        age_column=age_column or "",
        statuses=statuses,
        projects=projects,
        archive=True if archive is None else archive,
        allow_audit_deletion=bool(allow_audit),
        has_acknowledgements=has_acks,
        batch_size=batch_size,
    )
    return rule, errors


def _get(
    data: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    errors: list[str],
    prefix: str,
) -> Any:
    """``data[key]`` if present and of ``kind``; otherwise ``None``, recording a wrong type."""
    value = data.get(key)
    if value is None:
        return None
    # bool is an int to Python, but never an integer (or a number) in a policy.
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    expected = " or ".join(_kind_name(k) for k in kinds)
    errors.append(f"{prefix}{key!r} must be {_article(expected)}, got {_kind(value)}")
    return None


def _get_strings(
    data: Mapping[str, Any], key: str, errors: list[str], prefix: str
) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    errors.append(
        f'{prefix}{key!r} must be an array of strings (like ["a", "b"]), got {_kind(value)}'
    )
    return None


def _kind_name(kind: type) -> str:
    return next((name for cls, name in _TOML_KINDS if cls is kind), kind.__name__)


def _kind(value: Any) -> str:
    """The TOML name of ``value``'s type, with the value when it is short."""
    name = next((n for cls, n in _TOML_KINDS if isinstance(value, cls)), type(value).__name__)
    shown = repr(value)
    return f"{name} {shown}" if len(shown) <= 40 else name


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def load_policy(source: str) -> Policy:
    """The policy named by ``source``: a preset name, else the path of a TOML file.

    A preset name wins over a file of the same name; write ``./default`` to mean the file.

    Raises:
        PolicyError: ``source`` is neither a preset nor an existing file, the file cannot be
            read, or its policy is invalid (the detail then starts with the file's path).
    """
    if source in PRESETS:
        return PRESETS[source]
    path = Path(source).expanduser()
    if not source.strip() or not path.exists():
        raise PolicyError(
            f"unknown policy {source!r}: not a preset ({_names(PRESETS)}) and no such file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file: {exc}", source=str(path)) from None
    try:
        return parse_policy(text, default_name=path.stem)
    except PolicyError as exc:
        raise PolicyError(exc.errors, source=str(path)) from None


def _names(items: Iterable[str]) -> str:
    return ", ".join(items)
