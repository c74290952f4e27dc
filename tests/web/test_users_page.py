"""The Users page in Chromium: create a user, deactivate them (their open session ends at once),
reactivate them and set a new password; over plain HTTP, superusers only, CSRF and bad input."""

from __future__ import annotations

import re
import uuid
from typing import Any

from taskledger.services import users
from tests.helpers import make_user, transaction
from tests.web.conftest import (
    LiveServer,
    Watch,
    _open_context,
    fits_a_phone,
    log_in,
    serious_violations,
)
from tests.web.http_login import logged_in


def test_create_deactivate_and_reset_a_password(
    superuser_page: Any, browser: Any, live: LiveServer, watch: Watch
) -> None:
    page = superuser_page
    page.goto("/users")
    assert page.locator("tr[data-user='root@example.com']").get_by_text("(you)").is_visible()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    page.get_by_label("Email").fill("Ada@Example.com")
    page.get_by_label("Password", exact=True).fill("first password")
    page.get_by_role("button", name="Create user").click()
    page.get_by_text("Created ada@example.com.").wait_for()
    row = page.locator("tr[data-user='ada@example.com']")
    assert row.locator(".badge").inner_text() == "active"
    assert "user" in row.locator("td").nth(1).inner_text()
    assert serious_violations(page) == []

    # Ada logs in in a browser of her own.
    context = _open_context(browser, live, watch, viewport={"width": 1280, "height": 800})
    try:
        ada = context.new_page()
        log_in(ada, "ada@example.com", "first password")
        ada.goto("/agents")
        assert ada.url.endswith("/agents")

        row.get_by_role("button", name="Deactivate ada@example.com").click()
        page.get_by_text("Deactivated ada@example.com").wait_for()
        assert row.locator(".badge").inner_text() == "inactive"
        assert serious_violations(page) == []
        ada.goto("/agents")
        assert "/login?next=%2Fagents" in ada.url  # her session ended on the server

        row.get_by_role("button", name="Reactivate ada@example.com").click()
        page.get_by_text("Reactivated ada@example.com").wait_for()
        assert row.locator(".badge").inner_text() == "active"

        row.get_by_text("Reset password").click()
        row.get_by_label("New password for ada@example.com").fill("second password")
        row.get_by_role("button", name="Set password").click()
        page.get_by_text("Set a new password for ada@example.com").wait_for()
        assert serious_violations(page) == []

        ada.goto("/login")
        ada.get_by_label("Email").fill("ada@example.com")
        ada.get_by_label("Password").fill("first password")
        ada.get_by_role("button", name="Log in").click()
        ada.get_by_role("alert").filter(has_text="Incorrect email or password").wait_for()
        log_in(ada, "ada@example.com", "second password")
        assert ada.get_by_role("link", name="Users").count() == 0  # not a superuser
    finally:
        context.close()


def test_users_is_for_superusers(live: LiveServer) -> None:
    make_user(live.app, "root@example.com", superuser=True)
    owner = make_user(live.app, "owner@example.com")
    with logged_in(live.url, owner.email) as (http, token):
        assert http.get("/users").status_code == 403
        for path in (
            "/users",
            f"/users/{owner.id}/deactivate",
            f"/users/{owner.id}/activate",
            f"/users/{owner.id}/password",
        ):
            fields = {"csrf_token": token, "email": "x@example.com", "password": "long enough"}
            answer = http.post(path, data=fields)
            assert answer.status_code == 403, path
            assert "This needs a superuser." in answer.text
        assert "x@example.com" not in str(http.get("/runs").text)
    with logged_in(live.url, "root@example.com") as (http, token):
        assert "x@example.com" not in http.get("/users").text  # nothing was created


def test_users_bad_input_and_csrf(live: LiveServer) -> None:
    root = make_user(live.app, "root@example.com", superuser=True)
    make_user(live.app, "taken@example.com")
    with logged_in(live.url, root.email) as (http, token):

        def post(url: str, **fields: Any) -> Any:
            return http.post(url, data={"csrf_token": token, **fields})

        cases = [
            ({"email": "TAKEN@example.com", "password": "long enough"}, 409, "already exists"),
            ({"email": "not an email", "password": "long enough"}, 422, "Email: enter an email"),
            ({"email": "", "password": "long enough"}, 422, "Email: enter an email"),
            ({"email": "new@example.com", "password": "short"}, 422, "at least 8 characters"),
        ]
        for fields, status, message in cases:
            answer = post("/users", **fields)
            assert answer.status_code == status, fields
            assert message in answer.text, fields
            assert 'role="alert"' in answer.text
        assert "new@example.com" not in http.get("/users").text

        with transaction(live.app) as session:  # the superuser made on first start
            bootstrap = users.find_user(session=session, email="admin@localhost")
            assert bootstrap is not None
        assert post(f"/users/{bootstrap.id}/deactivate").status_code == 200
        last = post(f"/users/{root.id}/deactivate")
        assert last.status_code == 409 and "last active superuser" in last.text
        short = post(f"/users/{root.id}/password", password="short")
        assert short.status_code == 422 and "at least 8 characters" in short.text
        assert post(f"/users/{uuid.uuid4()}/deactivate").status_code == 404
        assert post(f"/users/{uuid.uuid4()}/password", password="long enough").status_code == 404
        assert post("/users/nope/activate").status_code == 422

        no_csrf = http.post("/users", data={"email": "z@example.com", "password": "long enough"})
        assert no_csrf.status_code == 403
        assert (
            http.post(f"/users/{root.id}/password", data={"password": "x" * 9}).status_code == 403
        )
        assert re.search(r"z@example\.com", http.get("/users").text) is None
