"""The input limits every request shares (SPEC section 4), as reusable annotated types.

Each limit is the same on SQLite and PostgreSQL, so that a value one backend would store and the
other refuse (or store and then fail to read back) is refused by both, up front, with a 422 that
names the field:

- JSON values (``inputs``, ``config``, ``result``, ``payload``...): at most :data:`MAX_JSON_DEPTH`
  levels of nesting, no NaN or ±Infinity, integers within signed 64 bits;
- timestamps: ISO 8601 text only (never a bare number read as Unix time), and an instant that
  stays representable once its UTC offset is applied;
- integers (ids in paths, bodies, cursors): within signed 64 bits;
- flags that authorise or skip a safeguard: JSON ``true``/``false`` only.

Used by the schemas, by the API's parameters and by the cursor decoder.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StrictBool

#: How deeply a JSON value may nest (an object or array is one level).
MAX_JSON_DEPTH = 32
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)

_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


def _in_int64(value: int) -> bool:
    return MIN_INT64 <= value <= MAX_INT64


def check_json_value(value: Any) -> Any:
    """``value`` unchanged, if it is JSON every backend stores and gives back as it was.

    Raises:
        ValueError: It nests deeper than :data:`MAX_JSON_DEPTH`, holds NaN or ±Infinity, or an
            integer outside signed 64 bits.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:  # a loop, not recursion: the value may nest very deeply
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")
        elif isinstance(item, int) and not isinstance(item, bool) and not _in_int64(item):
            raise ValueError("JSON integers must fit in signed 64 bits")
    return value


#: Any JSON value, within the limits above.
JsonValue = Annotated[Any, AfterValidator(check_json_value)]
#: A JSON object, within the limits above.
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]


def _timestamp_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value  # built in Python, not parsed from a request
    if not isinstance(value, str):
        raise ValueError("a timestamp is ISO 8601 text, e.g. 2025-01-31T12:00:00Z")
    if _NUMBER.fullmatch(value):
        raise ValueError(
            "a timestamp is ISO 8601 text, e.g. 2025-01-31T12:00:00Z, not a number (Unix time "
            "is not accepted)"
        )
    return value


def to_utc(value: datetime) -> datetime:
    """``value`` as aware UTC (naive taken as UTC already).

    Raises:
        ValueError: The instant falls outside the years 1-9999 once its offset is applied.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "the timestamp is out of range once its UTC offset is applied (years 1 to 9999 UTC)"
        ) from None


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset, e.g. 2025-01-31T12:00:00Z")
    return to_utc(value)


#: A timestamp in requests: ISO 8601 with an offset (naive values are refused), taken as UTC.
AwareDatetime = Annotated[
    datetime, BeforeValidator(_timestamp_text), AfterValidator(_require_aware)
]
#: A timestamp filter: ISO 8601; one without an offset is taken as UTC.
UtcDatetime = Annotated[datetime, BeforeValidator(_timestamp_text), AfterValidator(to_utc)]


def _true_or_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):  # query strings carry text
        return value == "true"
    raise ValueError("a flag is true or false")


#: A flag in a body: JSON ``true`` or ``false``, nothing that merely looks like one.
Flag = StrictBool
#: A flag in a query string: ``true`` or ``false``.
QueryFlag = Annotated[bool, BeforeValidator(_true_or_false)]
