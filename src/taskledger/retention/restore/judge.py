"""What restore knows about each table it may write, and how it judges an archived row.

Pure functions over the SQLAlchemy tables (no I/O): :mod:`taskledger.retention.restore.restore`
reads archives and the database and asks this module which tables come first, how to turn an
archived row back into column values, and what to do with a row whose key already exists.

A row whose key exists is compared with the archived one. Identical is ``same``. When every
difference is one that retention itself makes — a scrub marker where the archive has the
original, the terminal status (with its time and reason) an expiry sets, ``updated_at`` moved by
either of those, or a reference emptied when its parent was deleted — the archived
values are put back. Any other difference means the row was changed since it was archived: a
``conflict``, left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Column, Table, UniqueConstraint
from sqlalchemy.types import TypeDecorator

from taskledger.enums import PartAction
from taskledger.errors import ErrorKind, ValidationFailed
from taskledger.retention.archive.format import decode_value
from taskledger.retention.archive.stores import ArchiveCorrupt, ArchiveError
from taskledger.retention.policy.tables import TABLES, ExpireSpec, is_scrub_marker
from taskledger.store.models import Base

#: Tables archives hold besides the retained ones (``capture_side_effects``): the dependency
#: edges a task delete cascades to, an agent deleted through the API with its API keys, and
#: rooms deleted through the API with the participations a room or agent delete takes.
SIDE_TABLES = ("task_dependencies", "agents", "api_keys", "rooms", "room_participants")

#: References without a foreign key that a delete empties all the same: a task's assignee
#: (an agent or a user, so no foreign key can name it).
SOFT_REFERENCES: Mapping[str, tuple[str, ...]] = {"tasks": ("assigned_to", "assigned_to_type")}

#: Tables whose rows are credentials, with the column that disables one. Restore never brings a
#: credential back to life: such a row is inserted with that column set (see ``judge`` too).
#: Users (passwords) are never archived, so restore cannot write them at all.
CREDENTIALS: Mapping[str, str] = {"api_keys": "revoked_at"}

#: Every table restore may write, parents before children (the models' dependency order).
RESTORABLE: tuple[str, ...] = tuple(
    t.name for t in Base.metadata.sorted_tables if t.name in TABLES or t.name in SIDE_TABLES
)

#: Parts whose rows hold only the key and the references a parent delete emptied.
PARTIAL_ACTIONS = frozenset({PartAction.UNLINK})


class ArchiveIncompatible(ArchiveError):
    """The archive holds tables or columns this database does not have."""

    kind = ErrorKind.INVALID


class UnknownTable(ValidationFailed):
    """A table restore cannot write was asked for."""


Key = tuple[Any, ...]


@dataclass(frozen=True)
class ForeignKey:
    """A reference from a restored table to its parent row."""

    column: str
    parent_table: str
    parent_column: str
    nullable: bool


@dataclass(frozen=True)
class TableInfo:
    """The facts about one restorable table that restore needs, taken from its model."""

    name: str
    table: Table
    key_columns: tuple[str, ...]
    kinds: Mapping[str, type]
    foreign_keys: tuple[ForeignKey, ...]
    soft_references: tuple[str, ...]
    onupdate_columns: tuple[str, ...]
    unique_sets: tuple[tuple[str, ...], ...]
    scrub_fields: tuple[str, ...]
    expire: ExpireSpec | None
    #: An integer key a sequence fills (PostgreSQL needs it moved past restored ids).
    serial_column: str | None
    #: For a credential table, the column that disables a row (see ``CREDENTIALS``).
    revoke_column: str | None = None

    def key_of(self, row: Mapping[str, Any]) -> Key:
        """The primary key of ``row`` as a tuple."""
        return tuple(row[c] for c in self.key_columns)

    def decode(self, raw: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        """An archived row as column values (UUIDs, aware datetimes...), by column type.

        Raises:
            ArchiveIncompatible: The row names a column the table does not have, or lacks a key.
            ArchiveCorrupt: A value cannot be read as its column's type.
        """
        unknown = sorted(set(raw) - self.kinds.keys())
        if unknown:
            raise ArchiveIncompatible(
                f"{where}: table {self.name} has no column {', '.join(unknown)} in this database"
            )
        missing = [c for c in self.key_columns if c not in raw]
        if missing:
            raise ArchiveIncompatible(f"{where}: a row of {self.name} has no {missing[0]!r}")
        try:
            return {name: decode_value(value, self.kinds[name]) for name, value in raw.items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ArchiveCorrupt(
                f"{where}: a value of table {self.name} is unreadable: {exc}"
            ) from exc


def check_tables(names: Iterable[str]) -> list[str]:
    """``names`` in restore order, parents first.

    Raises:
        UnknownTable: A name is not a restorable table; the message lists the valid ones.
    """
    wanted = set(names)
    unknown = sorted(wanted - set(RESTORABLE))
    if unknown:
        raise UnknownTable(
            f"cannot restore table {', '.join(unknown)} (restorable tables: "
            f"{', '.join(RESTORABLE)})"
        )
    return [name for name in RESTORABLE if name in wanted]


def _kind(column: Column[Any]) -> type:
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    try:
        kind: type = column_type.python_type
    except NotImplementedError:
        return object
    return kind


@cache
def table_info(name: str) -> TableInfo:
    """The :class:`TableInfo` of restorable table ``name`` (see :func:`check_tables`)."""
    table = Base.metadata.tables[name]
    key_columns = tuple(c.name for c in table.primary_key.columns)
    foreign_keys = tuple(
        ForeignKey(fk.parent.name, fk.column.table.name, fk.column.name, bool(fk.parent.nullable))
        for fk in sorted(table.foreign_keys, key=lambda fk: fk.parent.name)
    )
    uniques = tuple(
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    )
    serial = None
    if len(key_columns) == 1:
        column = table.c[key_columns[0]]
        if column.autoincrement is True and _kind(column) is int:
            serial = column.name
    retained = TABLES.get(name)
    return TableInfo(
        name=name,
        table=table,
        key_columns=key_columns,
        kinds={c.name: _kind(c) for c in table.columns},
        foreign_keys=foreign_keys,
        soft_references=SOFT_REFERENCES.get(name, ()),
        onupdate_columns=tuple(c.name for c in table.columns if c.onupdate is not None),
        unique_sets=uniques,
        scrub_fields=retained.scrub_fields if retained else (),
        expire=retained.expire if retained else None,
        serial_column=serial,
        revoke_column=CREDENTIALS.get(name),
    )


SAME = "same"
CONFLICT = "conflict"


def judge(info: TableInfo, archived: Mapping[str, Any], live: Mapping[str, Any]) -> Any:
    """What to do with an archived row whose key exists.

    Only the columns present in ``archived`` are compared, so the partial rows of ``unlink``
    parts are judged by the same rule.

    A live row that is itself the *earlier* version of the archived one (the archive holds a row
    scrubbed or expired and then deleted in one run, and restore already put the original back)
    counts as ``SAME``: there is nothing older to return to.

    A credential the live row has revoked while the archived one had not (a restore revoked it,
    or someone did) is judged without that difference: revoking is never undone.

    Returns:
        ``SAME`` when the live row equals the archived one (or precedes it); ``CONFLICT`` when it
        differs in a way retention does not explain; otherwise the column values to put back.
    """
    revoke = info.revoke_column
    revoked_since = (
        revoke is not None
        and revoke in archived
        and archived[revoke] is None
        and live[revoke] is not None
    )
    if revoke is not None and revoked_since:
        archived = {**archived, revoke: live[revoke]}
    verdict = _undo(info, archived, live)
    if verdict == CONFLICT:
        earlier = {column: live[column] for column in archived}
        if _undo(info, earlier, archived) != CONFLICT:
            return SAME
    return verdict


def _undo(info: TableInfo, archived: Mapping[str, Any], live: Mapping[str, Any]) -> Any:
    """``judge`` without the look the other way: what turns ``live`` back into ``archived``."""
    differing = [c for c in archived if archived[c] != live[c]]
    if not differing:
        return SAME
    expired = _was_expired(info.expire, archived, live)
    expire_columns = _expire_columns(info.expire) if expired else ()
    nullable_refs = {fk.column for fk in info.foreign_keys if fk.nullable}
    nullable_refs.update(info.soft_references)
    changes: dict[str, Any] = {}
    retention_changed = expired
    for column in differing:
        if column in info.scrub_fields:
            if not is_scrub_marker(live[column]) or is_scrub_marker(archived[column]):
                return CONFLICT
            retention_changed = True
        elif column in expire_columns:
            pass
        elif column in nullable_refs and live[column] is None:
            pass  # emptied by ON DELETE SET NULL when its parent went
        elif column not in info.onupdate_columns:
            return CONFLICT
        changes[column] = archived[column]
    # updated_at moves with a scrub or an expiry; on its own it means someone edited the row.
    if not retention_changed and any(c in info.onupdate_columns for c in changes):
        return CONFLICT
    return changes


def _was_expired(
    spec: ExpireSpec | None, archived: Mapping[str, Any], live: Mapping[str, Any]
) -> bool:
    if spec is None or "status" not in archived:
        return False
    return (
        archived["status"] != live["status"]
        and live["status"] == spec.status
        and archived["status"] in spec.from_statuses
    )


def _expire_columns(spec: ExpireSpec | None) -> tuple[str, ...]:
    if spec is None:
        return ()
    extra = (spec.timestamp_column, spec.reason_column)
    return ("status", *(c for c in extra if c))


def part_order(parts: Sequence[Any]) -> list[Any]:
    """The order to apply one table's parts in: newest full-row parts first, partial ones last.

    Undoing newest first means a row a run touched twice (expired, then deleted) ends up as the
    oldest archived version, the one from before the run. Partial parts come last, once the rows
    they put references back into exist.
    """
    full = [p for p in parts if p.action not in PARTIAL_ACTIONS]
    partial = [p for p in parts if p.action in PARTIAL_ACTIONS]
    return list(reversed(full)) + list(reversed(partial))
