"""What one running app owns: settings, engine, session factories, metrics and the JWT secret.

Built by :func:`taskledger.api.create_app`; the API and the web UI both read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from taskledger.metrics import Metrics
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.deletes import DeleteReport, delete_records
from taskledger.retention.safeguards.alerts import Alerter
from taskledger.retention.safeguards.guard import SpikeGuard
from taskledger.services.login_throttle import LoginThrottle
from taskledger.settings import Settings

#: Methods whose requests only read: their sessions run concurrently with writers on SQLite.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class AppState:
    """Held at ``app.state.ledger``; the dependencies of :mod:`taskledger.api.deps` and
    :mod:`taskledger.web.deps` read from it."""

    settings: Settings
    engine: Engine
    #: Sessions that may write (on SQLite their transactions begin IMMEDIATE).
    session_factory: sessionmaker[Session]
    #: Sessions that only read (DEFERRED on SQLite: concurrent with the writer).
    read_session_factory: sessionmaker[Session]
    metrics: Metrics
    secret_key: str
    head_revision: str
    alerter: Alerter
    spike_guard: SpikeGuard
    login_throttle: LoginThrottle

    def sessions_for(self, method: str) -> sessionmaker[Session]:
        """The session factory for a request of ``method``: requests that may write get
        sessions whose transactions take SQLite's write lock when they begin (so concurrent
        writers wait for each other instead of failing); reads get concurrent ones."""
        return self.read_session_factory if method in READ_METHODS else self.session_factory

    @property
    def archive_target(self) -> ArchiveTarget:
        return ArchiveTarget.from_settings(self.settings)

    def delete_records(self, table: str, keys: Sequence[Any], *, actor: str) -> DeleteReport:
        """Delete records of ``table`` for a route, as every API delete goes: refused under a
        hold (409), counted by the spike guard (429 when the window is full), archived first
        to the archive root, and audited (see
        :func:`taskledger.retention.execute.deletes.delete_records`)."""
        return delete_records(
            self.engine,
            self.session_factory,
            table=table,
            keys=keys,
            actor=actor,
            guard=self.spike_guard,
            target=self.archive_target,
            metrics=self.metrics,
        )
