"""One data dir, several databases: each database's initial admin password has a file of its
own, and no file is ever overwritten."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.cli import cli
from taskledger.services.bootstrap import INITIAL_PASSWORD_FILE, initial_password_file
from taskledger.services.passwords import verify_password
from taskledger.settings import Settings
from taskledger.store import make_engine
from taskledger.store.models import User


def run(data_dir: Path, url: str | None, *args: str) -> tuple[int, str, str]:
    env = {"TASKLEDGER_DATA_DIR": str(data_dir)}
    if url is not None:
        env["TASKLEDGER_DATABASE_URL"] = url
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def admin_password_works(engine: Engine, password_file: Path) -> bool:
    password = password_file.read_text().strip()
    with Session(engine) as session:
        admin = session.scalars(select(User).where(User.email == "admin@localhost")).one()
        return verify_password(admin.password_hash, password)


def test_two_databases_keep_their_own_password_files(settings: Settings, engine: Engine) -> None:
    data_dir = settings.data_dir
    # The test's database (SQLite outside the data dir, or PostgreSQL) first ...
    code, _, err = run(data_dir, settings.resolved_database_url, "generate", "--runs", "1")
    assert code == 0, err
    first = initial_password_file(settings)
    assert first.name.startswith(f"{INITIAL_PASSWORD_FILE}-") and first.name in err
    first_text = first.read_text()
    # ... then the data dir's own SQLite database, the default.
    assert run(data_dir, None, "db", "upgrade")[0] == 0
    code, _, err = run(data_dir, None, "generate", "--runs", "1")
    assert code == 0, err
    default = data_dir / INITIAL_PASSWORD_FILE
    assert str(default) in err
    assert first.read_text() == first_text
    assert admin_password_works(engine, first)
    default_engine = make_engine(f"sqlite:///{data_dir / 'taskledger.db'}")
    try:
        assert admin_password_works(default_engine, default)
    finally:
        default_engine.dispose()


def test_a_file_left_by_an_earlier_database_is_never_overwritten(tmp_path: Path) -> None:
    """The default database deleted and made again: its password file is an earlier
    database's, so no superuser is made until the file is moved, and it is left as it was."""
    data_dir = tmp_path / "data"
    assert run(data_dir, None, "db", "upgrade")[0] == 0
    assert run(data_dir, None, "generate", "--runs", "1")[0] == 0
    password_file = data_dir / INITIAL_PASSWORD_FILE
    earlier = password_file.read_text()
    for path in data_dir.glob("taskledger.db*"):
        path.unlink()
    assert run(data_dir, None, "db", "upgrade")[0] == 0

    code, _, err = run(data_dir, None, "generate", "--runs", "1")
    assert code == 1
    [line] = err.splitlines()
    assert str(password_file) in line and "never overwritten" in line and "move" in line
    code, _, err = run(data_dir, None, "serve", "--no-migrate", "--port", "1")
    assert code == 1 and "never overwritten" in err and "Traceback" not in err
    assert password_file.read_text() == earlier
    engine = make_engine(f"sqlite:///{data_dir / 'taskledger.db'}")
    try:
        with Session(engine) as session:
            assert session.scalars(select(User)).all() == []
        password_file.rename(tmp_path / "kept")
        code, _, err = run(data_dir, None, "generate", "--runs", "1")
        assert code == 0, err
        assert admin_password_works(engine, password_file)
    finally:
        engine.dispose()
