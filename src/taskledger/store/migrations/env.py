"""Alembic environment: runs migrations on the engine handed over by ``taskledger.store.migrate``.

Run through the ``alembic`` command (with the repository's ``alembic.ini``) it builds the engine
from :class:`taskledger.settings.Settings` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from taskledger.store.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    from taskledger.settings import Settings
    from taskledger.store.engine import make_engine

    settings = Settings()
    settings.ensure_data_dir()
    return make_engine(settings.resolved_database_url)


def run_migrations_online() -> None:
    from taskledger.store.engine import for_writing, is_sqlite

    engine = _engine()
    with for_writing(engine).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(connection),
            compare_type=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        # Alembic's transaction ends inside the connection's; make it durable.
        if connection.in_transaction():
            connection.commit()


if context.is_offline_mode():
    raise SystemExit("taskledger migrations run online only: pass a database URL")
run_migrations_online()
