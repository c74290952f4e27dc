"""Every page, found from the route table (so a new page is covered without naming it): without
a login it sends the browser to log in, and a POST without the session's CSRF token is 403,
whatever its path and form."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from taskledger.web.pages import PageRoute
from tests.helpers import make_user
from tests.web.http_login import form_login

OPEN = {("GET", "/"), ("GET", "/login")}


def _pages(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, PageRoute):
            continue
        types = {p.name: p.field_info.annotation for p in route.dependant.path_params}
        path = route.path_format
        for name, annotation in types.items():
            value = str(uuid.uuid4()) if annotation is uuid.UUID else "1"
            path = path.replace("{" + name + "}", value)
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    assert len(found) > 8, "no pages found: has the router API changed?"
    return found


def test_every_page_needs_a_login(client: TestClient, app: FastAPI) -> None:
    for method, path in _pages(app):
        if method != "GET" or (method, path) in OPEN:
            continue
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next="), path


def test_every_post_needs_the_csrf_token(client: TestClient, app: FastAPI) -> None:
    posts = [path for method, path in _pages(app) if method == "POST"]
    for path in posts:  # anonymous: no pre-login token either
        assert client.post(path, data={"x": "1"}).status_code == 403, path
    make_user(app, "owner@example.com")
    form_login(client, "owner@example.com")
    for path in posts:
        bodies: list[dict[str, Any]] = [
            {"data": {"name": "x"}},
            {"data": {"name": "x", "csrf_token": "forged"}},
            {"headers": {"X-CSRF-Token": "forged"}},
        ]
        for body in bodies:
            answer = client.post(path, follow_redirects=False, **body)
            assert answer.status_code == 403, (path, body)
            assert "CSRF" in answer.text
    assert client.get("/runs").status_code == 200  # still logged in: nothing was done
