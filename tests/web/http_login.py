"""Plain-HTTP helpers for the page tests: a client logged in through the login form, and the
CSRF token of its session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.helpers import PASSWORD

_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_META_TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


def form_login(client: Any, email: str, password: str = PASSWORD) -> str:
    """Log ``client`` (an httpx or Starlette test client) in through the login form; the
    session's CSRF token."""
    form = _FORM_TOKEN.search(client.get("/login").text)
    assert form is not None
    fields = {"email": email, "password": password, "csrf_token": form.group(1)}
    answer = client.post("/login", data=fields, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/runs").text)


@contextmanager
def logged_in(url: str, email: str, password: str = PASSWORD) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client logged in as ``email`` and its session's CSRF token."""
    with httpx.Client(base_url=url) as http:
        form = _FORM_TOKEN.search(http.get("/login").text)
        assert form is not None
        fields = {"email": email, "password": password, "csrf_token": form.group(1)}
        answer = http.post("/login", data=fields)
        assert answer.status_code == 303, answer.text
        http.cookies.set("taskledger_session", answer.cookies["taskledger_session"])
        yield http, csrf_of(http.get("/runs").text)


def csrf_of(page: str) -> str:
    """The session's CSRF token, as a page carries it."""
    found = _META_TOKEN.search(page)
    assert found is not None
    return found.group(1)
