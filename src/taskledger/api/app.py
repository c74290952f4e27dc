"""The app factory. Nothing is built at import time: each call makes a self-contained app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from taskledger import __version__
from taskledger.api import (
    admin_archives,
    admin_holds,
    admin_retention,
    admin_stats,
    agents,
    api_keys,
    auth,
    compat,
    connections,
    health,
    instructions,
    projects,
    runs,
    sessions,
    tasks,
    users,
)
from taskledger.api.errors import install_error_handlers
from taskledger.api.middleware import BodySizeLimit, RequestMetrics, ValidUnicodeBody
from taskledger.api.openapi import install_openapi
from taskledger.api.routing import MethodIndex
from taskledger.api.state import AppState
from taskledger.metrics import Metrics
from taskledger.retention.alerts import Alerter
from taskledger.retention.guard import SpikeGuard
from taskledger.retention.scheduler import Scheduler
from taskledger.services import passwords
from taskledger.services.bootstrap import ensure_initial_admin, resolve_secret_key
from taskledger.services.login_throttle import LoginThrottle
from taskledger.settings import Settings
from taskledger.store.engine import make_engine, make_session_factory
from taskledger.store.migrate import head_revision

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, engine: Engine | None = None, schedule: bool = True
) -> FastAPI:
    """Build the taskledger app.

    Args:
        settings: The configuration to serve with.
        engine: An engine to use instead of one built from ``settings`` (tests pass theirs).
            The app disposes only an engine it built itself.
        schedule: Run ``TASKLEDGER_RETENTION_SCHEDULE`` in this process (when it is set).
    """
    conflict = settings.admin_key_conflict()
    if conflict is not None:
        log.warning(conflict)
    owns_engine = engine is None
    if engine is None:
        settings.ensure_data_dir()
        engine = make_engine(
            settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
    metrics = Metrics()
    alerter = Alerter(webhook_url=settings.alert_webhook_url, metrics=metrics)
    state = AppState(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        read_session_factory=make_session_factory(engine, read_only=True),
        metrics=metrics,
        secret_key=resolve_secret_key(settings),
        head_revision=head_revision(),
        alerter=alerter,
        spike_guard=SpikeGuard(
            engine=engine,
            max_rows=settings.spike_max_rows,
            window_seconds=settings.spike_window_seconds,
            alerter=alerter,
        ),
        login_throttle=LoginThrottle(
            engine=engine,
            max_per_account=settings.login_max_failures_per_account,
            max_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_seconds,
        ),
    )
    # Process-wide (memory is the process's): the app built last in a process sets the bound.
    passwords.slots.configure(
        limit=settings.password_check_concurrency,
        wait_seconds=settings.password_check_wait_seconds,
    )

    scheduler = (
        Scheduler(engine, state.session_factory, settings, metrics)
        if settings.retention_schedule and schedule
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        admin = ensure_initial_admin(state.session_factory, settings)
        if admin is not None:
            # Shown once; the file (mode 0600) keeps it for whoever missed the log line.
            log.warning(
                "created superuser %s with password %s (also in %s)",
                admin.email,
                admin.password,
                admin.password_file,
            )
        if scheduler is not None:
            scheduler.start()
            log.info("retention scheduled on %r (UTC)", settings.retention_schedule)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            alerter.close()
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="taskledger",
        version=__version__,
        summary="The durable record of AI-agent orchestration.",
        lifespan=lifespan,
    )
    app.state.ledger = state
    install_error_handlers(app)
    install_openapi(app)
    routers = (
        health,
        auth,
        users,
        projects,
        api_keys,
        agents,
        tasks,
        sessions,
        connections,
        instructions,
        runs,
        compat,
        admin_retention,
        admin_holds,
        admin_stats,
        admin_archives,
    )
    for module in routers:
        app.include_router(module.router)
    app.state.method_index = MethodIndex(
        route for module in routers for route in module.router.routes if isinstance(route, APIRoute)
    )
    app.add_middleware(ValidUnicodeBody)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodySizeLimit)
    return app
