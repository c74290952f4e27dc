"""Rendering pages: the templates with what every page needs, the route class of the pages,
and the error pages (one mapping from errors to statuses with the API, rendered as HTML).

Every page gets ``login`` (the logged-in user, or none), ``csrf_token`` for its forms,
``static()`` for asset URLs, and ``htmx`` (whether htmx asked for a fragment).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from taskledger import __version__
from taskledger.web.deps import CSRF_COOKIE, check_csrf, csrf_token
from taskledger.web.format import FILTERS

log = logging.getLogger(__name__)

#: Set in a request's scope by :class:`PageRoute`: its errors render as pages.
PAGE_SCOPE_KEY = "taskledger.page"


class PageRoute(APIRoute):
    """A route of the web UI: errors raised in it are shown as HTML, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            request.scope[PAGE_SCOPE_KEY] = True
            return await handler(request)

        return handle


def is_htmx(request: Request) -> bool:
    """Whether htmx made the request (and so wants a fragment, not a whole page)."""
    return request.headers.get("HX-Request") == "true"


class Pages:
    """The templates of the web UI and how a view renders one."""

    def __init__(self, directory: Path, *, static_url: str) -> None:
        # Templates ship in the package: they are read once, not checked for changes per render.
        self.templates = Jinja2Templates(
            env=Environment(loader=FileSystemLoader(directory), autoescape=True, auto_reload=False)
        )
        env = self.templates.env
        env.filters.update(FILTERS)
        env.globals["static"] = lambda path: f"{static_url}/{path}?v={__version__}"
        env.globals["version"] = __version__

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """``name`` rendered with ``context`` and what every page needs."""
        values: dict[str, Any] = {
            "login": getattr(request.state, "login", None),
            "csrf_token": csrf_token(request),
            "htmx": is_htmx(request),
            **(context or {}),
        }
        response = self.templates.TemplateResponse(
            request, name, values, status_code=status_code, headers=dict(headers or {})
        )
        new_token = getattr(request.state, "new_csrf", None)
        if new_token is not None:
            response.set_cookie(
                CSRF_COOKIE,
                new_token,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response


def pages_of(request: Request) -> Pages:
    """The :class:`Pages` of the app serving ``request``."""
    pages: Pages = request.app.state.pages
    return pages


def login_url(request: Request) -> str:
    """The login page, coming back to this page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or is_htmx(request):
        target = request.headers.get("HX-Current-URL") or "/"
    return f"/login?next={quote(target, safe='')}"


def _detail_text(detail: Any) -> list[str]:
    if isinstance(detail, list):  # a 422's items: where, and what is wrong there
        lines = []
        for item in detail:
            where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",))
            lines.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return lines
    return [str(detail)]


def page_errors(request: Request, response: Response) -> Response:
    """An error response of the API's handlers, shown as a page when a page raised it.

    401 sends the browser to the login page (htmx follows ``HX-Redirect``); other errors
    render ``error.html``, or for htmx its partial into the page's message area."""
    if not request.scope.get(PAGE_SCOPE_KEY):
        return response
    if response.status_code == 401:
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": login_url(request)})
        return RedirectResponse(login_url(request), status_code=303)
    try:
        detail = json.loads(bytes(response.body)).get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "allow")}
    pages = pages_of(request)
    if is_htmx(request):
        headers.update({"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"})
        name = "_error.html"
    else:
        name = "error.html"
    return pages.render(
        request,
        name,
        {"status": response.status_code, "messages": _detail_text(detail)},
        status_code=response.status_code,
        headers=headers,
    )


def page_router() -> APIRouter:
    """A router for pages: errors shown as HTML, every POST CSRF-checked, none in OpenAPI."""
    return APIRouter(
        route_class=PageRoute, dependencies=[Depends(check_csrf)], include_in_schema=False
    )
