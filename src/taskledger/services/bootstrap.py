"""First-start setup: the JWT signing secret and the initial superuser.

Called by the server at start-up (and by ``taskledger generate`` on a database with no users).
Both steps are safe to run concurrently from several replicas: the secret file is created with
``O_EXCL`` and the superuser insert relies on the unique email.

The initial password file is named after its database, and never overwritten: one data dir may
serve several databases (a SQLite file and a PostgreSQL server, say), and each one's first
password must survive the others' first starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskledger.errors import ConflictError
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
    if settings.auth.secret_key is not None and settings.auth.secret_key.get_secret_value():
        return settings.auth.secret_key.get_secret_value()
    path = settings.ensure_data_dir() / SECRET_KEY_FILE
    write_private_file(path, secrets.token_urlsafe(48) + "\n")
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise RuntimeError(f"{path} is empty; delete it to generate a new secret")
    return secret


def initial_password_file(settings: Settings) -> Path:
    """Where the initial admin password of the database in force is written.

    ``<data_dir>/initial_admin_password`` for the data dir's own SQLite file (the default
    database); for any other database, ``initial_admin_password-<name>-<hash>``, where ``name``
    is the database's name (or SQLite file's stem) and ``hash`` is taken from its location
    (backend, host, port, database or file; never the user or password).
    """
    data_dir = settings.data_dir
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and "mode=memory" not in str(url):
            path = Path(database).resolve()
            if path == (data_dir / "taskledger.db").resolve():
                return data_dir / INITIAL_PASSWORD_FILE
            identity, name = f"sqlite:{path}", path.stem
        else:
            identity, name = "sqlite::memory:", "memory"
    else:
        port = url.port or (5432 if url.get_backend_name() == "postgresql" else "")
        host = (url.host or "").lower()
        identity = f"{url.get_backend_name()}://{host}:{port}/{url.database or ''}"
        name = url.database or url.get_backend_name()
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9._]+", "_", name).strip("._") or "database"
    return data_dir / f"{INITIAL_PASSWORD_FILE}-{label[:40]}-{digest}"


def _stale_password_file(path: Path) -> ConflictError:
    return ConflictError(
        f"{path} already exists, from an earlier database at this location, and is never "
        "overwritten; this database has no users yet: move that file away (keep its password "
        "if you still need it), then start again"
    )


def check_initial_password_file(session_factory: sessionmaker[Session], settings: Settings) -> None:
    """Refuse, before a server starts, what :func:`ensure_initial_admin` would refuse at its
    start-up: a database with no users whose password file exists already.

    Raises:
        ConflictError: Why, and what to do.
    """
    path = initial_password_file(settings)
    if not path.exists():
        return
    with session_factory() as session:
        if not session.scalar(select(exists().where(User.id.is_not(None)))):
            raise _stale_password_file(path)


def ensure_initial_admin(
    session_factory: sessionmaker[Session], settings: Settings
) -> InitialAdmin | None:
    """Create ``admin@localhost`` when the database has no users at all.

    Returns the new account (with its password) the one time it is created, else ``None``.

    Raises:
        ConflictError: The database has no users, but its password file
            (:func:`initial_password_file`) exists already, from an earlier database at the same
            location: it is never overwritten, and no superuser is created until it is moved.
    """
    settings.ensure_data_dir()
    path = initial_password_file(settings)
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
            # Flushed first, so that a replica losing the race gets its IntegrityError here
            # rather than finding the winner's file and refusing.
            session.flush()
            if path.exists():
                raise _stale_password_file(path)
    except IntegrityError:
        log.info("another process created the initial superuser first")
        return None
    if not write_private_file(path, password + "\n"):
        # Made meanwhile by another database at this location: keep both, lose neither.
        path = path.with_name(f"{path.name}-{secrets.token_hex(4)}")
        write_private_file(path, password + "\n")
    return InitialAdmin(email=INITIAL_ADMIN_EMAIL, password=password, password_file=path)
