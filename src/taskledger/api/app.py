"""The app factory. Nothing is built at import time: each call makes a self-contained app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

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
    rooms,
    runs,
    sessions,
    tasks,
    users,
)
from taskledger.api.errors import install_error_handlers
from taskledger.api.middleware import BodySizeLimit, RequestMetrics, ValidUnicodeBody
from taskledger.api.openapi import install_openapi
from taskledger.api.routing import MethodIndex
from taskledger.metrics import Metrics
from taskledger.retention.safeguards.alerts import Alerter
from taskledger.retention.safeguards.guard import SpikeGuard
from taskledger.retention.scheduler import Scheduler
from taskledger.services import passwords
from taskledger.services.bootstrap import ensure_initial_admin, resolve_secret_key
from taskledger.services.login_throttle import LoginThrottle
from taskledger.settings import Settings
from taskledger.state import AppState
from taskledger.store.engine import make_engine, make_session_factory
from taskledger.store.migrate import head_revision
from taskledger.store.partitions import PartitionKeeper
from taskledger.web import install_web

log = logging.getLogger(__name__)

#: Swagger UI's and ReDoc's files, vendored in the package (see static/README.md).
STATIC_DIR = Path(__file__).with_name("static")
#: Where the documentation pages load them from.
DOCS_ASSETS = "/docs/assets"


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
    alerter = Alerter(webhook_url=settings.retention.alert_webhook_url, metrics=metrics)
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
            max_rows=settings.retention.spike_max_rows,
            window_seconds=settings.retention.spike_window_seconds,
            alerter=alerter,
        ),
        login_throttle=LoginThrottle(
            engine=engine,
            max_per_account=settings.auth.login_max_failures_per_account,
            max_per_address=settings.auth.login_max_failures_per_address,
            window_seconds=settings.auth.login_window_seconds,
        ),
    )
    # Process-wide (memory is the process's): the app built last in a process sets the bound.
    passwords.slots.configure(
        limit=settings.auth.password_check_concurrency,
        wait_seconds=settings.auth.password_check_wait_seconds,
    )

    scheduler = (
        Scheduler(engine, state.session_factory, settings, metrics)
        if settings.scheduler.schedule and schedule
        else None
    )
    # PostgreSQL: the partitions of runs ahead of time (a no-op on SQLite).
    keeper = PartitionKeeper(engine, settings.runs_partition)

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
        keeper.start()
        if scheduler is not None:
            scheduler.start()
            log.info("retention scheduled on %r (UTC)", settings.scheduler.schedule)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            keeper.stop()
            alerter.close()
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="taskledger",
        version=__version__,
        summary="The durable record of AI-agent orchestration.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs_pages, from the package instead of a CDN
        redoc_url=None,
    )
    app.state.ledger = state
    install_error_handlers(app)
    install_openapi(app)
    install_docs_pages(app)
    routers = (
        health,
        auth,
        users,
        projects,
        api_keys,
        agents,
        rooms,
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
    install_web(app)
    # Every route, the documentation pages included, so each 405 names what its path allows.
    # (FastAPI keeps included routers as one entry each in app.routes, so they are listed apart.)
    pages = [route for route in app.routes if isinstance(route, Route)]
    included = [route for module in routers for route in module.router.routes]
    app.state.method_index = MethodIndex(r for r in pages + included if isinstance(r, Route))
    app.add_middleware(ValidUnicodeBody)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodySizeLimit)
    return app


class _DocsAssets(StaticFiles):
    """The vendored files; a 405 names the methods they answer, as every other 405 does."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "GET, HEAD"}
            )
        return await super().get_response(path, scope)


def install_docs_pages(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), whose scripts, styles and icon come from
    the package under ``/docs/assets``: with FastAPI's defaults they come from a CDN, and the
    pages are blank on a machine that cannot reach it."""
    app.mount(DOCS_ASSETS, _DocsAssets(directory=STATIC_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    def prefix(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url,
        )

    async def swagger_ui_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
