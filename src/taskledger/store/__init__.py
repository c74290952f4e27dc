"""Persistence: the engine and session factory, the ORM models and the Alembic migrations.

Everything above this package (services, retention, api, cli) reaches the database through it.
"""

from taskledger.store.engine import make_engine, make_session_factory
from taskledger.store.models import Base

__all__ = ["Base", "make_engine", "make_session_factory"]
