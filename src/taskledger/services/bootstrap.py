"""First-start setup: the JWT signing secret and the initial superuser.

Called by the server at start-up. Both steps are safe to run concurrently from several replicas:
the secret file is created with ``O_EXCL`` and the superuser insert relies on the unique email.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskledger.services.passwords import hash_password
from taskledger.settings import Settings
from taskledger.store.models import User

log = logging.getLogger(__name__)

INITIAL_ADMIN_EMAIL = "admin@localhost"
INITIAL_PASSWORD_FILE = "initial_admin_password"  # noqa: S105 - a file name
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name


@dataclass(frozen=True)
class InitialAdmin:
    """The superuser created on first start, and where its password was written."""

    email: str
    password: str
    password_file: Path


def write_private_file(path: Path, content: str) -> bool:
    """Create ``path`` with mode 0600 holding ``content``; ``False`` if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def resolve_secret_key(settings: Settings) -> str:
    """The JWT signing secret: configured, or generated once and kept in the data dir (0600)."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    path = settings.ensure_data_dir() / SECRET_KEY_FILE
    write_private_file(path, secrets.token_urlsafe(48) + "\n")
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise RuntimeError(f"{path} is empty; delete it to generate a new secret")
    return secret


def ensure_initial_admin(
    session_factory: sessionmaker[Session], settings: Settings
) -> InitialAdmin | None:
    """Create ``admin@localhost`` when the database has no users at all.

    Returns the new account (with its password) the one time it is created, else ``None``.
    """
    password = secrets.token_urlsafe(18)
    try:
        with session_factory.begin() as session:
            if session.scalar(select(exists().where(User.id.is_not(None)))):
                return None
            session.add(
                User(
                    email=INITIAL_ADMIN_EMAIL,
                    password_hash=hash_password(password),
                    is_superuser=True,
                    is_active=True,
                )
            )
    except IntegrityError:
        log.info("another process created the initial superuser first")
        return None
    path = settings.ensure_data_dir() / INITIAL_PASSWORD_FILE
    if path.exists():
        path.unlink()  # a stale file from an earlier, since-emptied database
    write_private_file(path, password + "\n")
    return InitialAdmin(email=INITIAL_ADMIN_EMAIL, password=password, password_file=path)
