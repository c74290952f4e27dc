"""The exception tree shared by services, the retention engine, the API and the CLI.

::

    TaskledgerError                 base of everything raised on purpose
    ├── ConfigurationError          settings or files that cannot be used
    ├── NotFoundError               the record does not exist (or is not visible) -> 404
    ├── ConflictError               the request clashes with current state -> 409
    ├── ValidationFailed            input is well-formed but not acceptable -> 422
    ├── BadRequestError             malformed input such as a broken cursor -> 400
    ├── AuthenticationError         who is calling could not be established -> 401
    ├── PermissionDenied            the caller may not do this -> 403
    └── SafeguardRefused            a cap, guard or lock refused the work -> 409 / CLI exit 3

The API maps each class to its status code in one place (``taskledger.api.errors``); the CLI maps
them to exit codes. Services raise these and nothing HTTP-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TaskledgerError(Exception):
    """Base class of every error taskledger raises on purpose.

    Args:
        detail: Human-readable message, or a JSON-serialisable structure for the API's ``detail``.
    """

    status_code = 500

    def __init__(self, detail: Any = None) -> None:
        self.detail = detail if detail is not None else self.__class__.__doc__
        super().__init__(str(self.detail))


class ConfigurationError(TaskledgerError):
    """The configuration cannot be used."""

    status_code = 500


class NotFoundError(TaskledgerError):
    """Not found."""

    status_code = 404


class ConflictError(TaskledgerError):
    """The request conflicts with the current state."""

    status_code = 409


class ValidationFailed(TaskledgerError):
    """The input is not acceptable.

    Args:
        detail: What is wrong, for people; or, for several problems at once, a list of
            ``{"loc": [...], "msg": ..., "type": ...}`` items (the shape of a validation error).
        loc: Where in the request the problem is, e.g. ``("body", "finished_at")``.
    """

    status_code = 422

    def __init__(self, detail: Any = None, *, loc: Sequence[str | int] = ("body",)) -> None:
        super().__init__(detail)
        self.loc = tuple(loc)

    def error_items(self) -> list[dict[str, Any]]:
        """The problems as validation-error items, whatever form ``detail`` took."""
        if isinstance(self.detail, list):
            return [
                item if isinstance(item, dict) else _item(self.loc, str(item))
                for item in self.detail
            ]
        return [_item(self.loc, str(self.detail))]


def _item(loc: Sequence[str | int], msg: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": "value_error"}


class BadRequestError(TaskledgerError):
    """The request is malformed."""

    status_code = 400


class AuthenticationError(TaskledgerError):
    """Not authenticated."""

    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class PermissionDenied(TaskledgerError):
    """Forbidden."""

    status_code = 403


class SafeguardRefused(TaskledgerError):
    """A safeguard refused the operation."""

    status_code = 409
