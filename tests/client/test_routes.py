"""Every route of the HTTP API has a client method, on ``Ledger`` and on ``AsyncLedger``: the
app's route table is walked (as ``tests/api/test_access_matrix.py`` does), so a route added to
the API without a client method fails here (or is listed, with a reason, in ``NOT_WRAPPED``)."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from taskledger.client import AsyncLedger, Ledger
from taskledger.web.pages import PageRoute
from tests.client.routes import CLIENT_METHODS, NOT_WRAPPED, requested_routes


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, PageRoute):
            continue  # the web UI's pages
        for method in route.methods or ():
            path = route.path_format
            if method not in ("HEAD", "OPTIONS") and path:
                found.add((method, path))
    assert found, "the route table is empty: has the router API changed?"
    return found


def _resolve(client: Any, name: str) -> Any:
    target = client
    for part in name.split("."):
        target = getattr(target, part)
    return target


def test_every_api_route_has_a_client_method(app: FastAPI) -> None:
    routes = _api_routes(app)
    assert sorted(routes - CLIENT_METHODS.keys() - NOT_WRAPPED.keys()) == [], (
        "add a client method for these routes (and list it in tests/client/routes.py)"
    )
    assert sorted((CLIENT_METHODS.keys() | NOT_WRAPPED.keys()) - routes) == []
    assert not CLIENT_METHODS.keys() & NOT_WRAPPED.keys()


def test_each_listed_method_exists_sync_and_async() -> None:
    sync, asynchronous = Ledger("http://127.0.0.1:9", "k"), AsyncLedger("http://127.0.0.1:9", "k")
    try:
        for name in sorted(set(CLIENT_METHODS.values())):
            assert callable(_resolve(sync, name)), name
            method = _resolve(asynchronous, name)
            assert inspect.iscoroutinefunction(method), name
            assert not inspect.iscoroutinefunction(_resolve(sync, name)), name
    finally:
        sync.close()


def test_access_log_lines_map_to_routes() -> None:
    log = [
        'INFO: 127.0.0.1:5 - "GET /api/v1/rooms/0b9e/participants?active=true HTTP/1.1" 200 OK',
        'INFO: 127.0.0.1:5 - "GET /api/v1/runs.csv?status=failed HTTP/1.1" 200 OK',
        'INFO: 127.0.0.1:5 - "POST /api/v1/runs:batch HTTP/1.1" 201 Created',
        'INFO: 127.0.0.1:5 - "GET /api/v1/runs/12 HTTP/1.1" 503 Service Unavailable',
    ]
    assert requested_routes(log) == {
        ("GET", "/api/v1/rooms/{room_id}/participants"),
        ("GET", "/api/v1/runs.csv"),
        ("POST", "/api/v1/runs:batch"),
    }
