"""Keyset pagination with opaque cursors bound to the sort order and the filters.

Every list in the API pages this way: the next page starts strictly after the last row seen, so a
page costs the same at any depth and rows inserted meanwhile are neither skipped nor repeated.
The cursor is base64url JSON holding the last row's sort values and a fingerprint of the
listing's name and filters; a cursor reused with other filters, or one that does not decode, is a
400. One that decodes to a value no row can hold (an integer outside signed 64 bits, a timestamp
out of range once its offset is applied) is a 422, like the same value anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, String, Uuid, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from taskledger.errors import BadRequestError, ValidationFailed
from taskledger.schemas.limits import MAX_INT64, MIN_INT64, to_utc
from taskledger.store.types import UTCDateTime

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Keyset:
    """A sort order usable for keyset paging: unique, backed by an index, one direction."""

    name: str
    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = True


def fingerprint(keyset: Keyset, filters: Mapping[str, Any]) -> str:
    """A short hash of the listing and its filters; a cursor is valid only with the same one."""
    canonical = json.dumps(
        {"keyset": keyset.name, "filters": _normalise(filters)}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _normalise(filters: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None or value == [] or value == ():
            continue
        if isinstance(value, list | tuple | set | frozenset):
            value = sorted(str(v) for v in value)
        out[key] = value
    return out


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class _OutOfRange(Exception):
    """A cursor value that decodes but that no row can hold."""


def _decode_value(column: InstrumentedAttribute[Any], raw: Any) -> Any:
    column_type = column.property.columns[0].type
    if isinstance(column_type, UTCDateTime):
        if not isinstance(raw, str):
            raise ValueError("timestamp expected")
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError("aware timestamp expected")
        try:
            return to_utc(value)
        except ValueError as exc:
            raise _OutOfRange(str(exc)) from None
    if isinstance(column_type, Uuid):
        return uuid.UUID(str(raw))
    if isinstance(column_type, Integer):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("integer expected")
        if not MIN_INT64 <= raw <= MAX_INT64:
            raise _OutOfRange("an integer outside signed 64 bits")
        return raw
    if isinstance(column_type, String):
        if not isinstance(raw, str):
            raise ValueError("string expected")
        return raw
    raise ValueError(f"unsupported cursor column type {column_type!r}")  # pragma: no cover


def encode_cursor(keyset: Keyset, values: Sequence[Any], fp: str) -> str:
    """The opaque cursor that resumes after a row with sort ``values``."""
    payload = json.dumps({"v": [_encode_value(v) for v in values], "f": fp}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode_cursor(keyset: Keyset, cursor: str, fp: str) -> list[Any]:
    """The sort values held by ``cursor``; 400 when it is malformed or made for other filters."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        raw_values, cursor_fp = payload["v"], payload["f"]
        if not isinstance(raw_values, list) or len(raw_values) != len(keyset.columns):
            raise ValueError("wrong number of values")
        values = [_decode_value(c, v) for c, v in zip(keyset.columns, raw_values, strict=True)]
    except _OutOfRange as exc:
        raise ValidationFailed(
            f"The cursor holds a value out of range: {exc}.", loc=("query", "cursor")
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error, RecursionError) as exc:
        raise BadRequestError("Malformed cursor.") from exc
    if cursor_fp != fp:
        raise BadRequestError(
            "This cursor belongs to a listing with other filters; start again without a cursor."
        )
    return values


def apply_keyset(
    stmt: Select[Any], keyset: Keyset, *, cursor: str | None, fp: str, limit: int
) -> Select[Any]:
    """Order ``stmt`` by the keyset, start after ``cursor``, fetch ``limit`` + 1 rows."""
    columns = keyset.columns
    if cursor is not None:
        values = decode_cursor(keyset, cursor, fp)
        bound = tuple_(*[literal(v, c.type) for c, v in zip(columns, values, strict=True)])
        row = tuple_(*columns)
        stmt = stmt.where(row < bound if keyset.descending else row > bound)
    order = [c.desc() if keyset.descending else c.asc() for c in columns]
    return stmt.order_by(*order).limit(limit + 1)


def paginate(
    *,
    session: Session,
    stmt: Select[Any],
    keyset: Keyset,
    limit: int,
    cursor: str | None,
    filters: Mapping[str, Any],
) -> tuple[list[Any], str | None]:
    """Run one page of ``stmt`` (selecting one ORM entity); returns the rows and the next cursor."""
    fp = fingerprint(keyset, filters)
    rows = list(session.scalars(apply_keyset(stmt, keyset, cursor=cursor, fp=fp, limit=limit)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    values = [getattr(last, c.key) for c in keyset.columns]
    return rows, encode_cursor(keyset, values, fp)
