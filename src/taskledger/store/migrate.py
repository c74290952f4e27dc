"""Schema migrations: upgrade, report the current revision, detect drift from the models.

Used by ``taskledger db ...``, by ``taskledger serve`` before it starts, and by ``/readyz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from taskledger.store.models import Base
from taskledger.store.partitions import KEYS_TABLE, is_partition_name

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at taskledger's migrations, optionally bound to ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest revision in the migration history."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a history
        raise RuntimeError("the migration history is empty")
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the database behind ``engine`` to ``revision``."""
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it has never been migrated.

    A plain query rather than Alembic's context, because ``/readyz`` calls this on every probe.
    """
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        query = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
        revision = conn.execute(query).scalar()
        return str(revision) if revision is not None else None


def drift(engine: Engine) -> list[Any]:
    """Differences between the ORM models and the database schema; empty means none."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=_compare_options(conn.dialect.name))
        return list(compare_metadata(context, Base.metadata))


#: PostgreSQL: what partitioning ``runs`` adds to, or takes from, the schema the models describe
#: (see :mod:`taskledger.store.partitions`): the side table of idempotency keys and its lookup
#: index replace the unique constraint, and the partitions are tables of their own.
_POSTGRESQL_ONLY = {KEYS_TABLE, "ix_runs_project_id_idempotency_key"}
_MODELS_ONLY_ON_SQLITE = {"uq_runs_project_id_idempotency_key"}


def _compare_options(dialect: str) -> dict[str, Any]:
    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        if dialect != "postgresql":
            return True
        if reflected and (name in _POSTGRESQL_ONLY or is_partition_name(name)):
            return False
        return not (kind == "unique_constraint" and name in _MODELS_ONLY_ON_SQLITE)

    return {"compare_type": True, "compare_server_default": False, "include_object": include}
