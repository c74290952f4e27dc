"""Logging in and out in a real browser, the session cookie's flags, the CSRF check, the
security headers, and the pages' accessibility."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.helpers import make_user
from tests.web.conftest import LiveServer, log_in, serious_violations


def test_log_in_and_out(page: Any, live: LiveServer) -> None:
    make_user(live.app, "owner@example.com")
    page.goto("/tasks")
    assert "/login?next=%2Ftasks" in page.url
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").filter(has_text="Incorrect email or password").wait_for()
    assert serious_violations(page) == []

    log_in(page, "owner@example.com")
    page.goto("/tasks")
    assert page.url.endswith("/tasks")
    cookie = next(c for c in page.context.cookies() if c["name"] == "taskledger_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/tasks")
    assert "/login" in page.url  # the session ended on the server, not only in the browser


def test_a_post_without_the_csrf_token_is_refused(live: LiveServer) -> None:
    make_user(live.app, "owner@example.com")
    with httpx.Client(base_url=live.url) as http:
        form = http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        fields = {"email": "owner@example.com", "password": "correct horse battery staple"}
        assert http.post("/login", data=fields).status_code == 403
        assert http.post("/login", data={**fields, "csrf_token": "forged"}).status_code == 403
        logged_in = http.post("/login", data={**fields, "csrf_token": token.group(1)})
        assert logged_in.status_code == 303
        http.cookies.set("taskledger_session", logged_in.cookies["taskledger_session"])
        assert http.post("/logout").status_code == 403  # a session's forms need its own token
        assert http.post("/logout", headers={"X-CSRF-Token": token.group(1)}).status_code == 403
        page = http.get("/tasks")
        assert page.status_code == 200
        session_token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert session_token is not None
        out = http.post("/logout", headers={"X-CSRF-Token": session_token.group(1)})
        assert out.status_code == 303
        assert http.get("/tasks").status_code == 303


def test_pages_carry_a_strict_content_security_policy(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as http:
        page = http.get("/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None  # no inline script
    assert re.search(r"<[^>]+\son\w+=", page.text) is None  # no inline event handler


def test_logins_are_throttled_as_in_the_api(live: LiveServer) -> None:
    make_user(live.app, "owner@example.com")
    with httpx.Client(base_url=live.url) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        assert token is not None
        wrong = {"email": "owner@example.com", "password": "wrong", "csrf_token": token.group(1)}
        for _ in range(5):
            assert http.post("/login", data=wrong).status_code == 401
        throttled = http.post("/login", data={**wrong, "password": "correct horse battery staple"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert "Too many" in throttled.text


def test_a_secure_cookie_over_https(app: Any) -> None:
    from fastapi.testclient import TestClient

    make_user(app, "owner@example.com")
    with TestClient(app, base_url="https://testserver") as client:
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        answer = client.post(
            "/login",
            data={
                "email": "owner@example.com",
                "password": "correct horse battery staple",
                "csrf_token": token.group(1),
            },
            follow_redirects=False,
        )
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()
