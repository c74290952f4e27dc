"""Parameter types shared by the commands: timestamps read the way the API reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click


class Timestamp(click.ParamType[datetime]):
    """Every date option: ISO 8601, as the API takes it (``2026-11-01T00:00:00Z``,
    ``...+00:00``, ``...+02:00``, ``2026-11-01``), converted to aware UTC. A bad value is a
    usage error (exit code 2) that says why.

    Args:
        cutoff: Read a deletion's cutoff (``runs prune --before``), as the seed endpoint's
            ``date``: an offset or ``Z`` is required and the future is refused, since deleting
            is too consequential to guess a time zone.
    """

    name = "TIMESTAMP"

    def __init__(self, *, cutoff: bool = False) -> None:
        self.cutoff = cutoff

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return self._parse(str(value))
        except ValueError as exc:
            self.fail(f"{value!r} {exc}", param, ctx)

    def _parse(self, text: str) -> datetime:
        if self.cutoff:
            from taskledger.retention.execute.deletes import parse_cutoff

            return parse_cutoff(text)
        from pydantic import TypeAdapter, ValidationError

        from taskledger.schemas.limits import UtcDatetime

        try:
            parsed: datetime = TypeAdapter(UtcDatetime).validate_python(text)
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(
                f"is not an ISO 8601 timestamp (e.g. 2026-11-01T00:00:00Z): {message}"
            ) from None
        return parsed
