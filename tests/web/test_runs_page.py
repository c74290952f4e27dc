"""The Runs page in Chromium: filter with pills and a task list, the URL and the back button,
Load more to the end against the API's list, the CSV download against the API's export, the
new-runs indicator, saved views, the detail view, a phone's width and accessibility."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.helpers import make_agent, make_key, make_project, make_user
from tests.web.conftest import LiveServer, log_in, serious_violations

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def seed(live: LiveServer) -> tuple[Any, str]:
    owner = make_user(live.app, "owner@example.com")
    project = make_project(live.app, owner, "alpha")
    agent = make_agent(live.app, project, "worker-1")
    key = make_key(live.app, project, "write")
    runs = [
        {
            "task": ["build", "deploy", "test"][i % 3],
            "status": ["completed", "failed", "running", "queued", "cancelled"][i % 5],
            "started_at": (BASE + timedelta(minutes=7 * i)).isoformat(),
            "duration_ms": 1500 * i,
            "agent_id": str(agent.id) if i % 2 else None,
            "inputs": {"n": i},
            "log_excerpt": f"step {i}",
            "approval_state": "approved" if i % 4 == 0 else None,
        }
        for i in range(40)
    ]
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}) as http:
        response = http.post("/api/v1/runs:batch", json={"runs": runs})
        assert response.status_code == 201, response.text
    return project, key


def shown_ids(page: Any) -> list[int]:
    ids: list[int] = page.eval_on_selector_all(
        "#runs-rows tr[data-run]", "rows => rows.map(r => Number(r.dataset.run))"
    )
    return ids


def shown_statuses(page: Any) -> set[str]:
    found: list[str] = page.eval_on_selector_all(
        "#runs-rows tr .badge[class*='badge-']:not(.badge-approved):not(.badge-hold)",
        "nodes => nodes.map(n => n.textContent.trim())",
    )
    return set(found)


def checked_pills(page: Any) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        "input[name=status]:checked", "inputs => inputs.map(i => i.value)"
    )
    return found


def api_ids(live: LiveServer, key: str, query: str) -> list[int]:
    ids: list[int] = []
    cursor = None
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}) as http:
        while True:
            url = f"/api/v1/runs?{query}&limit=7" + (f"&cursor={cursor}" if cursor else "")
            body = http.get(url).json()
            ids += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return ids


def test_runs_page_flow(page: Any, live: LiveServer, tmp_path: Path) -> None:
    project, key = seed(live)
    log_in(page, "owner@example.com")
    page.goto(f"/runs?project={project.id}&limit=5")
    page.locator("#runs-chart svg").wait_for()
    assert len(shown_ids(page)) == 5
    assert serious_violations(page) == []

    # Filter with two pills and a task list: the URL carries them.
    page.locator("label.pill", has_text="failed").click()
    page.locator("label.pill", has_text="completed").click()
    page.get_by_label("Tasks (comma-separated)").fill("build, deploy")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"status=failed"))
    first_filter = parse_qs(urlparse(page.url).query)
    assert first_filter["status"] == ["completed", "failed"]
    assert first_filter["task"] == ["build, deploy"]
    assert "since" not in first_filter  # empty fields stay out of the URL
    first_rows = shown_ids(page)
    assert shown_statuses(page) <= {"completed", "failed"} and first_rows
    assert serious_violations(page) == []

    # Narrow to one status, then go back: the rows and pills come back.
    page.locator("label.pill", has_text="completed").click()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(lambda url: "status=completed" not in url)
    assert shown_statuses(page) == {"failed"}
    page.go_back()
    page.wait_for_url(re.compile(r"status=completed"))
    page.locator("#runs-rows tr[data-run]").first.wait_for()
    assert checked_pills(page) == ["completed", "failed"]
    assert shown_ids(page) == first_rows

    # Load more until the end: the rows are the API's, in its order.
    more = page.get_by_role("link", name="Load more")
    while more.count():
        before = len(shown_ids(page))
        more.click()
        page.wait_for_function(
            "n => document.querySelectorAll('#runs-rows tr[data-run]').length > n", arg=before
        )
    page.get_by_text("That is every run of these filters.").wait_for()
    api_query = f"project_id={project.id}&status=completed&status=failed&task=build&task=deploy"
    expected = api_ids(live, key, api_query)
    assert shown_ids(page) == expected and len(expected) > 10

    # The CSV download is the API's export of the same filters, byte for byte.
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV", exact=True).click()
    saved = tmp_path / "runs.csv"
    download.value.save_as(saved)
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}) as http:
        api_csv = http.get(f"/api/v1/runs.csv?{api_query}")
    assert api_csv.status_code == 200
    assert saved.read_bytes() == api_csv.content
    assert saved.read_bytes().count(b"\r\n") == len(expected) + 1

    # New runs recorded meanwhile: the indicator counts them, a click puts them on top.
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    scrolled = page.evaluate("() => window.scrollY")
    newer = [
        {"task": "build", "status": "failed", "started_at": "2026-04-01T00:00:00Z"},
        {"task": "deploy", "status": "completed", "started_at": "2026-04-01T00:01:00Z"},
        {"task": "test", "status": "failed", "started_at": "2026-04-01T00:02:00Z"},
    ]
    with httpx.Client(base_url=live.url, headers={"X-API-Key": key}) as http:
        created = http.post("/api/v1/runs:batch", json={"runs": newer}).json()["items"]
    page.evaluate("() => htmx.trigger(document.body, 'runs-check-new')")
    indicator = page.get_by_role("link", name=re.compile(r"2 new runs"))
    indicator.wait_for()
    before = shown_ids(page)
    indicator.click()
    page.wait_for_function(
        "n => document.querySelectorAll('#runs-rows tr[data-run]').length === n",
        arg=len(before) + 2,
    )
    assert shown_ids(page) == [created[1]["id"], created[0]["id"], *before]
    assert page.evaluate("() => window.scrollY") == scrolled  # no reload
    page.wait_for_function("() => !document.querySelector('#runs-new a')")

    # Save the view; it is listed as a link to the same filters.
    page.locator("summary", has_text="Saved views").click()
    page.get_by_label("View name").fill("failing builds")
    page.get_by_role("button", name="Save view").click()
    view = page.get_by_role("link", name="failing builds")
    view.wait_for()
    assert "status=completed&status=failed" in (view.get_attribute("href") or "")
    page.get_by_role("link", name="Reset").click()
    page.wait_for_url(re.compile(rf"/runs\?project={project.id}$"))
    assert checked_pills(page) == []
    page.get_by_role("link", name="failing builds").click()
    page.wait_for_url(re.compile(r"status=failed"))
    assert checked_pills(page) == ["completed", "failed"]
    assert serious_violations(page) == []

    # The detail view of the first row.
    page.locator("#runs-rows tr[data-run] td a").first.click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.get_by_role("heading", name="Inputs").wait_for()
    assert "eligible for deletion under default" in page.locator("dl.props").inner_text()
    assert serious_violations(page) == []


def test_runs_page_on_a_phone_and_empty(page: Any, live: LiveServer) -> None:
    project, _ = seed(live)
    log_in(page, "owner@example.com")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/runs?project={project.id}")
    page.locator("#runs-chart svg").wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert serious_violations(page) == []
    page.goto(f"/runs?project={project.id}&task=nothing-like-this")
    page.get_by_text("No runs match these filters.").wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert serious_violations(page) == []
    page.goto(f"/runs/{shown_id_of(live, project)}")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert serious_violations(page) == []
    page.goto(f"/runs?project={project.id}&since=garbage")
    page.get_by_role("alert").filter(has_text="not a date and time").wait_for()


def shown_id_of(live: LiveServer, project: Any) -> int:
    from sqlalchemy import select

    from taskledger.store.models import Run
    from tests.helpers import transaction

    with transaction(live.app) as session:
        found = session.scalar(select(Run.id).where(Run.project_id == project.id).limit(1))
    assert found is not None
    return int(found)
