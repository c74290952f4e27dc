"""The API keys page in Chromium: create a key (its secret shown once, with a copy button), use
it against the API, revoke it; and over plain HTTP, access, CSRF and bad input."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.helpers import make_agent, make_key, make_project, make_user
from tests.web.conftest import LiveServer, fits_a_phone, log_in, serious_violations
from tests.web.http_login import logged_in


def me(live: LiveServer, secret: str) -> httpx.Response:
    return httpx.get(f"{live.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})


def test_create_copy_use_and_revoke_a_key(page: Any, live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    project = make_project(live.app, owner, "alpha")
    make_agent(live.app, project, "worker-1")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    log_in(page, owner.email)
    page.goto(f"/keys?project={project.id}")
    assert page.get_by_text("No keys yet").is_visible()
    assert serious_violations(page) == []

    page.get_by_label("Name").fill("ci runner")
    page.get_by_label("write").check()
    page.get_by_label("Agent (optional)").select_option(label="worker-1")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_label("The new key's secret")
    secret_box.wait_for()
    secret = secret_box.input_value()
    assert re.fullmatch(r"tl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", secret)
    assert page.get_by_text("This is the only time the secret is shown").is_visible()
    row = page.locator(f"tr[data-key='{secret.split('_')[1]}']")
    assert row.locator("td").nth(2).inner_text() == "read, write"
    assert row.get_by_role("link", name="worker-1").is_visible()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    copy = page.get_by_role("button", name="Copy")
    assert copy.get_attribute("data-copy") == "new-key-secret"
    copy.click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    answer = me(live, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["key"]["prefix"] == secret.split("_")[1]

    page.reload()  # the secret is never shown again
    page.get_by_role("heading", name="Keys of alpha").wait_for()
    assert page.get_by_label("The new key's secret").count() == 0
    assert secret not in page.content()
    assert row.locator("td").nth(5).inner_text() != "never"  # last used, by the call above

    row.get_by_text("Revoke…").click()
    row.get_by_role("button", name="Revoke “ci runner”").click()
    page.get_by_text("is revoked: it no longer authenticates").wait_for()
    assert row.locator(".badge").inner_text() == "revoked"
    assert row.get_by_role("button").count() == 0
    assert serious_violations(page) == []
    assert me(live, secret).status_code == 401


def test_the_secret_is_shown_once_without_javascript(live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    project = make_project(live.app, owner, "alpha")
    with logged_in(live.url, owner.email) as (http, token):
        created = http.post(
            f"/keys?project={project.id}",
            data={"csrf_token": token, "name": "plain", "scopes": ["read"]},
        )
        assert created.status_code == 200
        assert created.headers["cache-control"] == "no-store"
        found = re.search(r'value="(tl_[^"]+)"', created.text)
        assert found is not None
        assert me(live, found.group(1)).status_code == 200
        assert found.group(1) not in http.get(f"/keys?project={project.id}").text
        key_id = re.search(r'action="/keys/([0-9a-f-]+)/revoke', created.text)
        assert key_id is not None
        revoked = http.post(
            f"/keys/{key_id.group(1)}/revoke?project={project.id}", data={"csrf_token": token}
        )
        assert revoked.status_code == 200 and "is revoked" in revoked.text
        assert me(live, found.group(1)).status_code == 401


def test_keys_access_csrf_and_bad_input(live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    stranger = make_user(live.app, "stranger@example.com")
    mine = make_project(live.app, owner, "alpha")
    theirs = make_project(live.app, stranger, "beta")
    their_agent = make_agent(live.app, theirs, "theirs")
    their_secret = make_key(live.app, theirs, "read")
    with logged_in(live.url, stranger.email) as (http, token):
        their_key = re.search(
            r'action="/keys/([0-9a-f-]+)/revoke', http.get(f"/keys?project={theirs.id}").text
        )
        assert their_key is not None
    with logged_in(live.url, owner.email) as (http, token):
        create = f"/keys?project={mine.id}"

        def post(url: str, **fields: Any) -> httpx.Response:
            return http.post(url, data={"csrf_token": token, **fields})

        assert http.get(f"/keys?project={theirs.id}").status_code == 404
        assert post(f"/keys?project={theirs.id}", name="x", scopes=["read"]).status_code == 404
        # Another project's key, through a project of mine or its own: 404 either way.
        for project in (mine.id, theirs.id):
            answer = post(f"/keys/{their_key.group(1)}/revoke?project={project}")
            assert answer.status_code == 404
        assert me(live, their_secret).status_code == 200
        assert post(f"/keys/{uuid.uuid4()}/revoke?project={mine.id}").status_code == 404
        assert post(f"/keys/{their_key.group(1)}/revoke").status_code == 422  # no project

        no_csrf = http.post(create, data={"name": "x", "scopes": ["read"]})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        forged = http.post(create, data={"name": "x", "scopes": ["read"], "csrf_token": "forged"})
        assert forged.status_code == 403

        cases = [
            ({"name": "  ", "scopes": ["read"]}, "Name: give the key a name."),
            ({"name": "x", "scopes": ["root"]}, "Scopes: a scope is one of read, write and admin."),
            ({"name": "x"}, "Scopes: choose at least one scope."),
            ({"name": "x", "scopes": ["read"], "agent_id": "nope"}, "Agent: choose one of"),
            (
                {"name": "x", "scopes": ["read"], "agent_id": str(their_agent.id)},
                "Agent: Agent not found in this project.",
            ),
            ({"name": "x" * 300, "scopes": ["read"]}, "Name: String should have at most 255"),
        ]
        for fields, message in cases:
            answer = post(create, **fields)
            assert answer.status_code == 422, fields
            assert message in answer.text.replace("&#39;", "'"), fields
            assert 'role="alert"' in answer.text
        assert "No keys yet" in http.get(create).text  # none of those made a key
