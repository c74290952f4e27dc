"""What a restore reports: counts per table, the conflicts it left alone and the credentials it
brought back revoked, each named (bounded), and the one-line summary.

Built by :func:`taskledger.retention.restore.restore.restore`; ``RestoreReport.to_dict`` is what
``taskledger restore --json``, ``POST /api/v1/admin/restore`` and the audit row
(``retention_runs.counts``) carry, and ``RestoreReport.summary`` is the line the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskledger.enums import RetentionOutcome
from taskledger.retention.archive.format import key_text

#: Conflicts and revoked keys named per table; the counts cover every one of them.
SHOWN_PER_TABLE = 20
#: Conflicts and revoked keys named in the one-line summary, over all tables.
SHOWN_IN_SUMMARY = 3

#: Why a conflicting row was left alone: the live row with its key differs from the archived one
#: in a way no retention action explains (it was changed, or another row took the key).
DIFFERENT_ROW = "a different row holds this key"


def unique_clash(columns: Sequence[str]) -> str:
    """Why a row was not inserted: another row holds its values of a unique constraint."""
    return f"another row holds its unique value ({', '.join(columns)})"


def _plain(value: Any) -> Any:
    """A key value as JSON carries it: integers and text as they are, UUIDs as text."""
    return (
        value if isinstance(value, int | str) and not isinstance(value, bool) else key_text(value)
    )


@dataclass(frozen=True)
class Conflict:
    """One archived row restore left alone because the database holds something else."""

    key: Mapping[str, Any]
    reason: str
    #: The columns that differ (a different row) or that clash (a unique value).
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": {name: _plain(value) for name, value in self.key.items()},
            "reason": self.reason,
            "columns": list(self.columns),
        }

    def key_label(self) -> str:
        """The key as the summary shows it: ``42``, or ``task_id=…, depends_on_id=…``."""
        if len(self.key) == 1:
            return str(_plain(next(iter(self.key.values()))))
        return ", ".join(f"{name}={_plain(value)}" for name, value in self.key.items())


_COUNTERS = ("inserted", "restored", "skipped", "orphaned", "conflicts", "unattached", "revoked")


@dataclass
class TableCounts:
    """What restore did with the archived rows of one table.

    ``inserted + restored + skipped + orphaned`` is every archived row handled; ``conflicts`` are
    among the skipped, ``unattached`` among the inserted or restored, and ``revoked`` (API keys
    that were live when archived and came back revoked) among the inserted. ``conflicted`` and
    ``revoked_keys`` name the first :data:`SHOWN_PER_TABLE` of them.
    """

    inserted: int = 0
    restored: int = 0
    skipped: int = 0
    orphaned: int = 0
    conflicts: int = 0
    unattached: int = 0
    revoked: int = 0
    conflicted: list[Conflict] = field(default_factory=list)
    revoked_keys: list[str] = field(default_factory=list)

    def conflict(self, conflict: Conflict) -> None:
        """Count a conflicting row (skipped, left alone), naming it while there is room."""
        self.skipped += 1
        self.conflicts += 1
        if len(self.conflicted) < SHOWN_PER_TABLE:
            self.conflicted.append(conflict)

    def revoke(self, key: Sequence[Any]) -> None:
        """Count a credential that comes back revoked, naming it while there is room."""
        self.revoked += 1
        if len(self.revoked_keys) < SHOWN_PER_TABLE:
            self.revoked_keys.append("/".join(str(_plain(value)) for value in key))

    def add(self, other: TableCounts) -> None:
        """Add ``other``'s counts (and named rows, up to the bound) to these."""
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = SHOWN_PER_TABLE - len(self.conflicted)
        self.conflicted.extend(other.conflicted[: max(room, 0)])
        room = SHOWN_PER_TABLE - len(self.revoked_keys)
        self.revoked_keys.extend(other.revoked_keys[: max(room, 0)])

    def counts(self) -> dict[str, int]:
        """The counts by name."""
        return {name: getattr(self, name) for name in _COUNTERS}

    def to_dict(self) -> dict[str, Any]:
        """The counts, then the named conflicts and revoked keys."""
        return {
            **self.counts(),
            "conflicted": [c.to_dict() for c in self.conflicted],
            "revoked_keys": list(self.revoked_keys),
        }


@dataclass
class RestoreReport:
    """The outcome of a restore; ``to_dict`` is what the CLI, the API and the audit row show."""

    uri: str
    archive_run_id: str | None
    retention_run_id: int
    dry_run: bool
    outcome: RetentionOutcome = RetentionOutcome.RUNNING
    tables: dict[str, TableCounts] = field(default_factory=dict)

    def total(self) -> TableCounts:
        """The counts of every table added up."""
        out = TableCounts()
        for counts in self.tables.values():
            out.add(counts)
        return out

    @property
    def inserted(self) -> int:
        return self.total().inserted

    @property
    def restored(self) -> int:
        return self.total().restored

    @property
    def skipped(self) -> int:
        return self.total().skipped

    @property
    def orphaned(self) -> int:
        return self.total().orphaned

    def summary(self) -> str:
        """One line: the totals, then any conflict and any key that came back revoked, named.

        For example ``inserted 5, restored 0, skipped 1, orphaned 0; 1 conflict: runs 42 (a
        different row holds this key); outcome ok; audit row 7``.
        """
        total = self.total()
        verb = "would " if self.dry_run else ""
        parts = [
            f"{'dry run: ' if self.dry_run else ''}inserted {total.inserted}, restored "
            f"{total.restored}, skipped {total.skipped}, orphaned {total.orphaned}"
        ]
        if total.conflicts:
            named = [
                f"{table} {c.key_label()} ({c.reason})"
                for table, counts in self.tables.items()
                for c in counts.conflicted
            ]
            noun = "conflict" if total.conflicts == 1 else "conflicts"
            parts.append(f"{total.conflicts} {noun}: {_listed(named, total.conflicts)}")
        if total.revoked:
            named = [key for counts in self.tables.values() for key in counts.revoked_keys]
            noun = "API key" if total.revoked == 1 else "API keys"
            parts.append(
                f"{total.revoked} {noun} {verb}{'come' if verb else 'came'} back revoked: "
                f"{_listed(named, total.revoked)}"
            )
        parts.append(f"outcome {self.outcome}")
        parts.append(f"audit row {self.retention_run_id}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The totals at the top level, then the archive, the audit row, the summary line and
        each table (with its named conflicts and revoked keys)."""
        return {
            **self.total().counts(),
            "uri": self.uri,
            "archive_run_id": self.archive_run_id,
            "retention_run_id": self.retention_run_id,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "summary": self.summary(),
            "tables": {name: counts.to_dict() for name, counts in self.tables.items()},
        }


def _listed(named: Sequence[str], total: int) -> str:
    shown = ", ".join(named[:SHOWN_IN_SUMMARY])
    more = total - min(len(named), SHOWN_IN_SUMMARY)
    return f"{shown} and {more} more" if more else shown
