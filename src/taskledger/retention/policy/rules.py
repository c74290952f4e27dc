"""The retention policy model: ``Rule`` and ``Policy``, their validation, dict form and hash.

Pure data and pure checks, with no I/O: :mod:`taskledger.retention.policy.load` reads policies
from TOML and presets; the planner and executor read these types. Every problem is reported at
once, each message naming its rule, so an operator fixes a policy in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from taskledger.errors import ValidationFailed
from taskledger.retention.policy.tables import TABLES, canonical_json

Action = Literal["delete", "scrub", "expire"]
ACTIONS: tuple[Action, ...] = ("delete", "scrub", "expire")

#: The most rows in one batch; batches are sized by :data:`DEFAULT_BATCH_TIME_BUDGET` below it.
DEFAULT_BATCH_SIZE = 10_000
#: How long one batch's write transaction should take: the executor sizes batches to it.
DEFAULT_BATCH_TIME_BUDGET = timedelta(milliseconds=100)
#: Bounds of ``batch_time_budget``: below 10 ms a batch is mostly its commit; above 5 s a
#: transaction is no longer short (SQLite's other writers wait for all of it).
MIN_BATCH_TIME_BUDGET = timedelta(milliseconds=10)
MAX_BATCH_TIME_BUDGET = timedelta(seconds=5)
DEFAULT_MAX_ROWS_PER_RUN = 1_000_000
DEFAULT_MAX_TABLE_FRACTION = 0.5
#: Anything younger is live data, not history; a typo such as "90s" for "90d" is caught here.
MIN_OLDER_THAN = timedelta(hours=1)
#: A century; a longer age would put the cutoff before the year 1 for no useful purpose.
MAX_OLDER_THAN = timedelta(days=36500)
#: Above this a batch stops being a short transaction.
MAX_BATCH_SIZE = 100_000

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"([0-9]+)([smhd])")
_BUDGET_UNIT_MS = {"ms": 1, "s": 1000}
_BUDGET = re.compile(r"([0-9]+)(ms|s)")
# Rule names end up in metrics labels, reports and command lines: keep them plain.
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class PolicyError(ValidationFailed):
    """A retention policy cannot be used.

    Args:
        errors: Every problem found, one message each (or a single message).
        source: Where the policy came from (a file path), prefixed to the detail when given.

    Attributes:
        errors: The problems as a tuple of messages; ``detail`` joins them with ``"; "``.
    """

    def __init__(self, errors: Sequence[str] | str, *, source: str | None = None) -> None:
        self.errors: tuple[str, ...] = (errors,) if isinstance(errors, str) else tuple(errors)
        self.source = source
        joined = "; ".join(self.errors)
        super().__init__(f"{source}: {joined}" if source else joined)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Rows of ``table`` older than ``older_than`` and matching the filters get ``action``.

    Statuses are kept in the table's vocabulary order and projects sorted, without duplicates,
    and an empty ``age_column`` becomes the table's default, so equal rules compare (and hash)
    equal however they were written.
    """

    name: str
    table: str
    older_than: timedelta
    action: Action
    age_column: str = ""
    statuses: tuple[str, ...] | None = None
    projects: tuple[str, ...] | None = None
    archive: bool = True
    allow_audit_deletion: bool = False
    has_acknowledgements: bool | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        table = TABLES.get(self.table)
        if not self.age_column and table is not None:
            object.__setattr__(self, "age_column", table.default_age_column)
        if self.statuses is not None:
            vocabulary = table.statuses if table is not None else ()
            object.__setattr__(self, "statuses", _in_order(self.statuses, vocabulary))
        if self.projects is not None:
            object.__setattr__(self, "projects", tuple(sorted(set(self.projects))))

    def cutoff(self, now: datetime) -> datetime:
        """The instant before which a row's age column makes it match.

        Raises:
            ValueError: ``now`` is naive.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now - self.older_than


@dataclass(frozen=True)
class Policy:
    """A named, ordered list of rules with the run-wide safeguards.

    Rules run in order; a later rule sees what earlier ones left.
    """

    name: str
    rules: tuple[Rule, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows_per_run: int = DEFAULT_MAX_ROWS_PER_RUN
    max_table_fraction: float = DEFAULT_MAX_TABLE_FRACTION
    batch_time_budget: timedelta = DEFAULT_BATCH_TIME_BUDGET

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        # 1 and 1.0 are the same fraction; keep one form so the hash does not tell them apart.
        object.__setattr__(self, "max_table_fraction", float(self.max_table_fraction))

    @property
    def policy_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of :func:`policy_to_dict`; stable across processes."""
        return hashlib.sha256(canonical_json(policy_to_dict(self)).encode("utf-8")).hexdigest()

    def batch_size_for(self, rule: Rule) -> int:
        """The largest batch ``rule`` runs with: its own ``batch_size``, or the policy's."""
        return rule.batch_size if rule.batch_size is not None else self.batch_size


def _in_order(items: Iterable[str], vocabulary: Sequence[str]) -> tuple[str, ...]:
    rank = {value: index for index, value in enumerate(vocabulary)}
    return tuple(sorted(set(items), key=lambda v: (rank.get(v, len(rank)), v)))


# --- durations -----------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """Parse ``<integer><unit>`` with unit ``s``, ``m``, ``h`` or ``d`` (``"90d"``, ``"36h"``).

    Raises:
        ValueError: ``text`` is not of that form, or is too long to represent.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"must be an integer followed by s, m, h or d (like '90d' or '36h'), got {text!r}"
        )
    try:
        return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None


def parse_budget(text: str) -> timedelta:
    """Parse a batch time budget, ``<integer>ms`` or ``<integer>s`` (``"100ms"``, ``"1s"``).

    Raises:
        ValueError: ``text`` is not of that form.
    """
    match = _BUDGET.fullmatch(text)
    if match is None:
        raise ValueError(
            f"must be an integer followed by ms or s (like '100ms' or '1s'), got {text!r}"
        )
    try:
        return timedelta(milliseconds=int(match[1]) * _BUDGET_UNIT_MS[match[2]])
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None


def format_budget(value: timedelta) -> str:
    """A batch time budget as :func:`parse_budget` reads it: ``"1s"`` if whole seconds, else
    ``"<n>ms"`` (fractions of a millisecond are dropped)."""
    milliseconds = int(value / timedelta(milliseconds=1))
    if milliseconds and milliseconds % 1000 == 0:
        return f"{milliseconds // 1000}s"
    return f"{milliseconds}ms"


def format_duration(value: timedelta) -> str:
    """The shortest ``<integer><unit>`` text for ``value`` (``timedelta(days=90)`` -> ``"90d"``).

    Raises:
        ValueError: ``value`` is negative or not a whole number of seconds.
    """
    if value.microseconds or value < timedelta(0):
        raise ValueError(f"not a whole, non-negative number of seconds: {value}")
    seconds = int(value.total_seconds())
    for unit, size in _UNIT_SECONDS.items():
        if seconds % size == 0 and (seconds or unit == "s"):
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds has a unit")


# --- validation ----------------------------------------------------------------------------------


def validate_policy(policy: Policy) -> Policy:
    """Check a policy built in code as strictly as a parsed one.

    Returns:
        ``policy`` itself, so that it can be used inline.

    Raises:
        PolicyError: Listing every problem found.
    """
    errors = policy_level_errors(policy)
    seen: set[str] = set()
    for rule in policy.rules:
        errors.extend(rule_errors(rule, seen))
    if errors:
        raise PolicyError(errors)
    return policy


def policy_level_errors(policy: Policy) -> list[str]:
    """The problems of the policy's own settings (name, batch size, caps), not of its rules."""
    errors = []
    if not policy.name.strip() or len(policy.name) > 255:
        errors.append("policy 'name' must be a non-empty string of at most 255 characters")
    if not 1 <= policy.batch_size <= MAX_BATCH_SIZE:
        errors.append(
            f"'batch_size' must be between 1 and {MAX_BATCH_SIZE}, got {policy.batch_size}"
        )
    if not MIN_BATCH_TIME_BUDGET <= policy.batch_time_budget <= MAX_BATCH_TIME_BUDGET:
        errors.append(
            "'batch_time_budget' must be between 10ms and 5s, got "
            f"{format_budget(policy.batch_time_budget)!r}"
        )
    if policy.max_rows_per_run < 1:
        errors.append(f"'max_rows_per_run' must be at least 1, got {policy.max_rows_per_run}")
    if not 0 < policy.max_table_fraction <= 1:
        errors.append(
            "'max_table_fraction' must be greater than 0 and at most 1, "
            f"got {policy.max_table_fraction}"
        )
    return errors


def rule_errors(rule: Rule, seen: set[str]) -> list[str]:
    """The problems of one rule, each message starting with ``rule '<name>': ``.

    Args:
        rule: The rule to check.
        seen: Names of the rules checked before this one, to catch duplicates; updated.
    """
    prefix = f"rule {rule.name!r}: "
    problems = []
    if not _RULE_NAME.fullmatch(rule.name):
        problems.append(
            "invalid rule name (use up to 64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit)"
        )
    elif rule.name in seen:
        problems.append("duplicate rule name (rule names must be unique in a policy)")
    seen.add(rule.name)
    table = TABLES.get(rule.table)
    if table is None:
        problems.append(f"unknown table {rule.table!r} (expected one of: {_names(TABLES)})")
        return [prefix + p for p in problems]  # everything else depends on the table
    if rule.age_column not in table.age_columns:
        problems.append(
            f"unknown age column {rule.age_column!r} for table {table.name!r} "
            f"(expected one of: {_names(table.age_columns)})"
        )
    if rule.statuses is not None:
        if not rule.statuses:
            problems.append("'status' must not be empty (leave it out to match every status)")
        for status in rule.statuses:
            if status not in table.statuses:
                problems.append(
                    f"unknown status {status!r} for table {table.name!r} "
                    f"(expected one of: {_names(table.statuses)})"
                )
    if rule.projects is not None and (
        not rule.projects or not all(p.strip() for p in rule.projects)
    ):
        problems.append("'projects' must be a non-empty list of project names or ids")
    older = format_duration(rule.older_than) if _whole(rule.older_than) else str(rule.older_than)
    if not _whole(rule.older_than):
        problems.append(f"'older_than' must be a whole number of seconds, got {older}")
    elif rule.older_than < MIN_OLDER_THAN:
        problems.append(f"'older_than' must be at least 1h, got {older!r}")
    elif rule.older_than > MAX_OLDER_THAN:
        problems.append(f"'older_than' must be at most 36500d (100 years), got {older!r}")
    problems.extend(_action_problems(rule))
    if rule.has_acknowledgements is not None and table.name != "instructions":
        problems.append("'has_acknowledgements' applies only to table 'instructions'")
    if rule.batch_size is not None and not 1 <= rule.batch_size <= MAX_BATCH_SIZE:
        problems.append(
            f"'batch_size' must be between 1 and {MAX_BATCH_SIZE}, got {rule.batch_size}"
        )
    return [prefix + p for p in problems]


def _action_problems(rule: Rule) -> list[str]:
    table = TABLES[rule.table]
    if rule.action not in ACTIONS:
        return [f"unknown action {rule.action!r} (expected one of: {', '.join(ACTIONS)})"]
    if rule.action == "scrub" and not table.can_scrub:
        able = _names(t.name for t in TABLES.values() if t.can_scrub)
        return [f"action 'scrub' is not available for table {table.name!r} (only for: {able})"]
    if rule.action == "expire":
        if table.expire is None:
            able = _names(t.name for t in TABLES.values() if t.can_expire)
            return [f"action 'expire' is not available for table {table.name!r} (only for: {able})"]
        stuck = [s for s in rule.statuses or () if s in table.statuses]
        stuck = [s for s in stuck if s not in table.expire.from_statuses]
        if stuck:
            return [
                f"status {_names(repr(s) for s in stuck)} cannot be expired on table "
                f"{table.name!r} (expire applies to: {_names(table.expire.from_statuses)})"
            ]
    if rule.action == "delete" and not rule.allow_audit_deletion:
        if table.name == "acknowledgements":
            return [
                "deleting acknowledgements removes the audit trail; "
                "set allow_audit_deletion = true to allow it"
            ]
        # The foreign key cascades: deleting an instruction deletes its acknowledgements too.
        if table.name == "instructions" and rule.has_acknowledgements is not False:
            return [
                "deleting instructions also deletes their acknowledgements (the audit trail); "
                "set has_acknowledgements = false to delete only unacknowledged instructions, "
                "or allow_audit_deletion = true"
            ]
    return []


def _whole(value: timedelta) -> bool:
    return value.microseconds == 0 and value >= timedelta(0)


def _names(items: Iterable[str]) -> str:
    return ", ".join(items)


# --- dict form ---------------------------------------------------------------------------------


#: The keys of a policy's dict form (and of a TOML policy's top level); ``rule`` holds the rules.
POLICY_KEYS = (
    "name",
    "batch_size",
    "batch_time_budget",
    "max_rows_per_run",
    "max_table_fraction",
    "rule",
)
#: The keys of one rule, in the order the dict form lists them.
RULE_KEYS = (
    "name",
    "table",
    "older_than",
    "age_column",
    "status",
    "projects",
    "action",
    "archive",
    "allow_audit_deletion",
    "has_acknowledgements",
    "batch_size",
)
#: The keys every rule must set: nothing destructive is implied by a default.
REQUIRED_RULE_KEYS = ("name", "table", "older_than", "action")


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON-ready data, with every default filled in.

    Keys are those of the TOML format (``rule`` holds the rules), so the result can be fed back
    to :func:`policy_from_dict`; it is also what :attr:`Policy.policy_hash` hashes and what the
    audit log and ``--json`` output show.
    """
    return {
        "name": policy.name,
        "batch_size": policy.batch_size,
        "batch_time_budget": format_budget(policy.batch_time_budget),
        "max_rows_per_run": policy.max_rows_per_run,
        "max_table_fraction": policy.max_table_fraction,
        "rule": [_rule_to_dict(rule) for rule in policy.rules],
    }


def _rule_to_dict(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "table": rule.table,
        "older_than": format_duration(rule.older_than),
        "age_column": rule.age_column,
        "status": None if rule.statuses is None else list(rule.statuses),
        "projects": None if rule.projects is None else list(rule.projects),
        "action": rule.action,
        "archive": rule.archive,
        "allow_audit_deletion": rule.allow_audit_deletion,
        "has_acknowledgements": rule.has_acknowledgements,
        "batch_size": rule.batch_size,
    }
