"""The built-in policies (``default``, ``development``, ``scientific``, ``ops``) by name.

``load_policy`` in :mod:`taskledger.retention.policy.load` accepts these names; the CLI's
``--preset`` and the API's ``preset`` choose among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

from taskledger.retention.policy.rules import DEFAULT_BATCH_SIZE, Policy, Rule

# The numbers are SPEC section 5's, taken from seeds 000 (runs 90 d), 001 (the development and
# scientific_compliance policies) and 002 (per-status run retention).

_TERMINAL_RUNS = ("completed", "failed", "cancelled")
_TERMINAL_INSTRUCTIONS = ("completed", "failed", "expired")
_ENDED_SESSIONS = ("completed", "terminated", "error")


def _preset(name: str, *rules: Rule, batch_size: int = DEFAULT_BATCH_SIZE) -> Policy:
    return Policy(name=name, rules=rules, batch_size=batch_size)


def _standard_rules(
    *, runs: timedelta, connections: timedelta, instructions: timedelta, sessions: timedelta
) -> tuple[Rule, ...]:
    """The rules every general preset has; only their ages differ."""
    return (
        Rule(
            name="runs-terminal",
            table="runs",
            older_than=runs,
            statuses=_TERMINAL_RUNS,
            action="delete",
        ),
        Rule(
            name="connections-stale",
            table="agent_connections",
            older_than=connections,
            statuses=("active",),
            action="expire",
        ),
        # Seed 001: keep acknowledged instructions for their audit trail, without the payload;
        # nothing refers to unacknowledged ones, so they go.
        Rule(
            name="instructions-acknowledged",
            table="instructions",
            older_than=instructions,
            statuses=_TERMINAL_INSTRUCTIONS,
            has_acknowledgements=True,
            action="scrub",
        ),
        Rule(
            name="instructions-unacknowledged",
            table="instructions",
            older_than=instructions,
            statuses=_TERMINAL_INSTRUCTIONS,
            has_acknowledgements=False,
            action="delete",
        ),
        Rule(
            name="sessions-ended",
            table="agent_sessions",
            older_than=sessions,
            statuses=_ENDED_SESSIONS,
            action="scrub",
        ),
    )


def default_policy() -> Policy:
    """Runs 90 d, stale connections 24 h, instructions 30 d, sessions 90 d; acks kept."""
    return _preset(
        "default",
        *_standard_rules(
            runs=timedelta(days=90),
            connections=timedelta(hours=24),
            instructions=timedelta(days=30),
            sessions=timedelta(days=90),
        ),
    )


def development_policy() -> Policy:
    """Short ages: runs 14 d, connections 4 h, instructions 7 d, sessions and acks 14/30 d.

    The one preset that deletes acknowledgements (after 30 d): development data has no audit value.
    """
    return _preset(
        "development",
        *_standard_rules(
            runs=timedelta(days=14),
            connections=timedelta(hours=4),
            instructions=timedelta(days=7),
            sessions=timedelta(days=14),
        ),
        Rule(
            name="acknowledgements-old",
            table="acknowledgements",
            older_than=timedelta(days=30),
            action="delete",
            allow_audit_deletion=True,
        ),
    )


def scientific_policy() -> Policy:
    """Long ages for research records: runs and sessions 730 d, instructions 365 d.

    Connections expire after 48 h, batches are at most 500 rows, and acknowledgements are kept.
    """
    # Seed 001 keeps acknowledgements 7 years (2555 d), the usual compliance floor. Keeping them
    # outright can only meet it; an operator who must purge them after 7 years adds that rule.
    return _preset(
        "scientific",
        *_standard_rules(
            runs=timedelta(days=730),
            connections=timedelta(hours=48),
            instructions=timedelta(days=365),
            sessions=timedelta(days=730),
        ),
        batch_size=500,
    )


def ops_policy() -> Policy:
    """Per-status run history (seed 002): completed 7 d, failed 30 d, cancelled 3 d."""
    return _preset(
        "ops",
        *(
            Rule(
                name=f"runs-{status}",
                table="runs",
                older_than=timedelta(days=days),
                statuses=(status,),
                action="delete",
            )
            for status, days in (("completed", 7), ("failed", 30), ("cancelled", 3))
        ),
    )


#: The built-in policies by name; ``load_policy`` accepts these names.
PRESETS: Mapping[str, Policy] = MappingProxyType(
    {
        "default": default_policy(),
        "development": development_policy(),
        "scientific": scientific_policy(),
        "ops": ops_policy(),
    }
)
