"""The exception tree shared by services, the retention engine, the API and the CLI.

Every error taskledger raises on purpose is a :class:`TaskledgerError`. Each class carries an
:class:`ErrorKind`, what went wrong in the domain's terms, and nothing about HTTP or exit codes:
``taskledger.api.errors`` maps each kind to a status in one table, and ``taskledger.cli.base``
maps each kind to an exit code in another. The whole tree, with the kind and the module of each
class (under ``taskledger.``); ``tests/test_errors.py`` checks it against the code::

    class                       kind            module                      raised when
    TaskledgerError             INTERNAL        errors                      base of them all
    ├── ConfigurationError      INTERNAL        errors                      settings cannot be used
    ├── NotFoundError           NOT_FOUND       errors                      no such record or hidden
    ├── ConflictError           CONFLICT        errors                      clashes with the state
    ├── ValidationFailed        INVALID         errors                      input not acceptable
    │   ├── PolicyError         INVALID         retention.policy.rules      a policy cannot be used
    │   └── UnknownTable        INVALID         retention.restore.judge     restore cannot write it
    ├── BadRequestError         BAD_REQUEST     errors                      malformed, e.g. a cursor
    ├── AuthenticationError     UNAUTHENTICATED errors                      caller unknown
    ├── PermissionDenied        FORBIDDEN       errors                      the caller may not
    ├── SafeguardRefused        REFUSED         errors                      a safeguard said no
    │   ├── CapRefused          REFUSED         retention.safeguards.guard  over a cap of the policy
    │   ├── SpikeRefused        THROTTLED       retention.safeguards.guard  deletion spike: retry
    │   ├── LockHeld            REFUSED         retention.safeguards.lock   another holds the lock
    │   ├── PlanSpent           REFUSED         retention.plan.plans        the plan ran already
    │   ├── PlanExpired         REFUSED         retention.plan.plans        the preview is too old
    │   ├── PlanExceeded        REFUSED         retention.execute.executor  more rows than planned
    │   └── LoginThrottled      THROTTLED       services.login_throttle     too many failed logins
    ├── PasswordCheckBusy       UNAVAILABLE     services.passwords          no password-check slot
    └── ArchiveError            INTERNAL        retention.archive.stores    archive unusable
        ├── InvalidArchiveURI   INVALID         retention.archive.stores    also a ValidationFailed
        ├── ArchiveNotFound     NOT_FOUND       retention.archive.stores    also a NotFoundError
        ├── ArchiveExists       CONFLICT        retention.archive.stores    also a ConflictError
        ├── ArchiveCorrupt      INVALID         retention.archive.stores    fails its checks
        ├── ArchiveIncompatible INVALID         retention.restore.judge     tables this db lacks
        └── ArchiveStorageError UNAVAILABLE     retention.archive.stores    the disk or store failed

A class that also derives from a second class of the tree (``InvalidArchiveURI`` is an
``ArchiveError`` and a ``ValidationFailed``) sets its kind itself rather than take the first
base's. An error that says when to try again sets ``retry_after`` (seconds): the API sends it as
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    """What went wrong, in the domain's terms; the API and the CLI each map it once."""

    #: Nothing the caller can change: a fault of the server, its setup or its data.
    INTERNAL = "internal"
    #: The record does not exist, or the caller may not know that it does.
    NOT_FOUND = "not_found"
    #: The request clashes with the current state of a record.
    CONFLICT = "conflict"
    #: The input is well-formed but not acceptable.
    INVALID = "invalid"
    #: The input is malformed (a broken cursor, say).
    BAD_REQUEST = "bad_request"
    #: Who is calling could not be established.
    UNAUTHENTICATED = "unauthenticated"
    #: The caller is known and may not do this.
    FORBIDDEN = "forbidden"
    #: A safeguard (a cap, a lock, a spent or stale plan) refused the work.
    REFUSED = "refused"
    #: A safeguard refused the work for now: too much of it lately; retry later.
    THROTTLED = "throttled"
    #: A resource the work needs (storage, a password-check slot) is not available now.
    UNAVAILABLE = "unavailable"


class TaskledgerError(Exception):
    """Base class of every error taskledger raises on purpose.

    Args:
        detail: Human-readable message, or a JSON-serialisable structure for the API's ``detail``.

    Attributes:
        kind: What went wrong; set by each class.
        retry_after: Seconds after which the same request may succeed, when that is known.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    retry_after: int | None = None

    def __init__(self, detail: Any = None) -> None:
        self.detail = detail if detail is not None else self.__class__.__doc__
        super().__init__(str(self.detail))


class ConfigurationError(TaskledgerError):
    """The configuration cannot be used."""

    kind = ErrorKind.INTERNAL


class NotFoundError(TaskledgerError):
    """Not found."""

    kind = ErrorKind.NOT_FOUND


class ConflictError(TaskledgerError):
    """The request conflicts with the current state."""

    kind = ErrorKind.CONFLICT


class ValidationFailed(TaskledgerError):
    """The input is not acceptable.

    Args:
        detail: What is wrong, for people; or, for several problems at once, a list of
            ``{"loc": [...], "msg": ..., "type": ...}`` items (the shape of a validation error).
        loc: Where in the request the problem is, e.g. ``("body", "finished_at")``.
    """

    kind = ErrorKind.INVALID

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

    kind = ErrorKind.BAD_REQUEST


class AuthenticationError(TaskledgerError):
    """Not authenticated."""

    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(TaskledgerError):
    """Forbidden."""

    kind = ErrorKind.FORBIDDEN


class SafeguardRefused(TaskledgerError):
    """A safeguard refused the operation."""

    kind = ErrorKind.REFUSED
