"""Putting the web UI on an app: static files, templates, security headers, error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from taskledger.web import views
from taskledger.web.pages import Pages, page_errors
from taskledger.web.security import SecurityHeaders

WEB_DIR = Path(__file__).parent
#: Where pages load the vendored and own assets from.
STATIC_URL = "/static"


def install_web(app: FastAPI) -> None:
    """Add the pages, ``/static`` and the HTML error pages to ``app``."""
    app.state.pages = Pages(WEB_DIR / "templates", static_url=STATIC_URL)
    app.state.page_errors = page_errors
    app.mount(STATIC_URL, StaticFiles(directory=WEB_DIR / "static"), name="static")
    for module in views.MODULES:
        app.include_router(module.router)
    app.add_middleware(SecurityHeaders)
