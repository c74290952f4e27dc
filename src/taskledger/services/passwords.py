"""Password hashing with argon2id; used by user management, login and the first-start bootstrap.

Every hash and verification takes one of a fixed number of process-wide slots first. argon2id at
its default parameters holds 64 MiB for the length of a check, so without a bound, N parallel
logins cost N times that; with it, memory stays at ``slots x 64 MiB`` whatever the load. A caller
that cannot get a slot within the configured wait gets :class:`PasswordCheckBusy` (503 with
``Retry-After``) instead of queueing without end. The slots are per process on purpose: memory is
a process's resource, so every app built in one process shares them; ``create_app`` sets their
number from its settings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from taskledger.errors import ErrorKind, TaskledgerError
from taskledger.settings import (
    DEFAULT_PASSWORD_CHECK_CONCURRENCY,
    DEFAULT_PASSWORD_CHECK_WAIT_SECONDS,
)

_hasher = PasswordHasher()


class PasswordCheckBusy(TaskledgerError):
    """Every password-check slot stayed busy for the whole wait; retry shortly."""

    kind = ErrorKind.UNAVAILABLE
    retry_after = 1


class PasswordSlots:
    """A resizable bound on concurrent password hashes and verifications.

    A semaphore whose size can change while it is in use (a new app may be configured while
    checks run): a check waits until fewer than ``limit`` are running, or gives up after
    ``wait_seconds``.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self._cond = threading.Condition()
        self._limit = limit
        self._wait_seconds = wait_seconds
        self._running = 0
        self._waiting = 0

    def configure(self, *, limit: int, wait_seconds: float) -> None:
        """Set how many checks may run at once and how long a check waits for a slot."""
        if limit < 1 or wait_seconds <= 0:
            raise ValueError("limit must be at least 1 and wait_seconds positive")
        with self._cond:
            self._limit = limit
            self._wait_seconds = wait_seconds
            self._cond.notify_all()  # a larger limit may admit waiters at once

    @property
    def limit(self) -> int:
        """How many checks may run at once."""
        return self._limit

    @property
    def running(self) -> int:
        """How many checks hold a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """How many checks are waiting for a slot now."""
        return self._waiting

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold one slot for the body of the ``with``.

        Raises:
            PasswordCheckBusy: no slot came free within the wait.
        """
        with self._cond:
            self._waiting += 1
            try:
                admitted = self._cond.wait_for(
                    lambda: self._running < self._limit, timeout=self._wait_seconds
                )
            finally:
                self._waiting -= 1
            if not admitted:
                raise PasswordCheckBusy(
                    "The server is busy checking other passwords; retry in a moment."
                )
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify()


#: The process's slots; ``create_app`` sizes them from the settings.
slots = PasswordSlots(DEFAULT_PASSWORD_CHECK_CONCURRENCY, DEFAULT_PASSWORD_CHECK_WAIT_SECONDS)


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id and a random salt.

    Raises:
        PasswordCheckBusy: no password-check slot came free in time.
    """
    with slots.hold():
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; never raises on a mismatch.

    Raises:
        PasswordCheckBusy: no password-check slot came free in time.
    """
    with slots.hold():
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
