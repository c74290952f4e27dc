"""The Runs page over plain HTTP: bad input is a 4xx page, other users' projects and runs are
404, downloads are the API's exports byte for byte, saved views, the histogram, new runs and
the retention overlay."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.enums import HoldScope
from taskledger.retention.plan.holds import add_hold
from taskledger.services import saved_views
from tests.helpers import make_agent, make_key, make_project, make_user, transaction
from tests.web.http_login import form_login


def record(client: TestClient, key: str, runs: list[dict[str, Any]]) -> list[int]:
    response = client.post("/api/v1/runs:batch", json={"runs": runs}, headers={"X-API-Key": key})
    assert response.status_code == 201, response.text
    return [item["id"] for item in response.json()["items"]]


def run_ids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'<tr data-run="(\d+)"', html)]


@pytest.fixture
def world(app: FastAPI, client: TestClient) -> dict[str, Any]:
    owner = make_user(app, "owner@example.com")
    stranger = make_user(app, "stranger@example.com")
    project = make_project(app, owner, "alpha")
    other = make_project(app, stranger, "beta")
    key = make_key(app, project, "write")
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    runs = [
        {
            "task": ["build", "deploy", "test"][i % 3],
            "status": ["completed", "failed", "running", "queued"][i % 4],
            "started_at": (base + timedelta(minutes=i)).isoformat(),
            "log_excerpt": f"line {i} =SUM(A1)",
            "inputs": {"i": i, "text": 'a "quoted" <b>'},
            "approval_state": "approved" if i % 5 == 0 else None,
        }
        for i in range(30)
    ]
    ids = record(client, key, runs)
    other_key = make_key(app, other, "write")
    other_ids = record(client, other_key, [{"task": "secret", "status": "completed"}])
    return {
        "project": project,
        "other": other,
        "key": key,
        "ids": ids,
        "other_ids": other_ids,
        "owner": owner,
    }


@pytest.mark.parametrize(
    "query",
    [
        "since=garbage",
        "status=bogus",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=not-a-cursor",
        "project=not-a-uuid",
        "until=12345",
    ],
)
def test_bad_input_is_a_clear_4xx_page(
    client: TestClient, world: dict[str, Any], query: str
) -> None:
    form_login(client, "owner@example.com")
    paths = ["/runs", "/runs/rows"]
    if "cursor" not in query and "limit" not in query:  # the others take neither
        paths += ["/runs.csv", "/runs.ndjson", "/runs/new", "/runs/histogram"]
    for path in paths:
        sep = "&" if "project=" not in query else ""
        project = "" if "project=" in query else f"project={world['project'].id}"
        response = client.get(f"{path}?{project}{sep}{query}")
        assert 400 <= response.status_code < 500, (path, query, response.status_code)
        assert "text/html" in response.headers["content-type"]
        assert 'role="alert"' in response.text


def test_a_cursor_of_other_filters_is_refused(client: TestClient, world: dict[str, Any]) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    page = client.get(f"/runs?project={pid}&limit=5")
    cursor = re.search(r"cursor=([A-Za-z0-9_-]+)", page.text)
    assert cursor is not None
    refused = client.get(f"/runs/rows?project={pid}&limit=5&status=failed&cursor={cursor[1]}")
    assert refused.status_code == 400 and "other filters" in refused.text


def test_another_users_project_and_runs_are_not_found(
    client: TestClient, world: dict[str, Any]
) -> None:
    form_login(client, "owner@example.com")
    other = world["other"].id
    for path in (
        f"/runs?project={other}",
        f"/runs/rows?project={other}",
        f"/runs/new?project={other}",
        f"/runs/histogram?project={other}",
        f"/runs.csv?project={other}",
        f"/runs.ndjson?project={other}",
        f"/runs/{world['other_ids'][0]}",
        f"/runs/{uuid.uuid4().int % 10**9 + 10**9}",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text
    assert client.get("/runs/garbage").status_code == 422


def test_logged_out_is_sent_to_log_in(client: TestClient, world: dict[str, Any]) -> None:
    response = client.get(f"/runs?project={world['project'].id}", follow_redirects=False)
    assert response.status_code == 303 and "/login?next=" in response.headers["location"]


def test_the_page_filters_and_pages_as_the_api(client: TestClient, world: dict[str, Any]) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    query = "status=failed&status=completed&task=build,+deploy&limit=4"
    seen: list[int] = []
    page = client.get(f"/runs?project={pid}&{query}")
    assert page.status_code == 200
    seen += run_ids(page.text)
    while (more := re.search(r'hx-get="(/runs/rows\?[^"]+)"', page.text)) is not None:
        page = client.get(more[1].replace("&amp;", "&"))
        assert page.status_code == 200
        seen += run_ids(page.text)
    api_query = "status=failed&status=completed&task=build&task=deploy"
    api = client.get(
        f"/api/v1/runs?project_id={pid}&{api_query}&limit=1000",
        headers={"X-API-Key": world["key"]},
    )
    assert seen == [item["id"] for item in api.json()["items"]]
    assert len(seen) > 4


@pytest.mark.parametrize("suffix", ["csv", "ndjson"])
def test_downloads_are_the_api_exports(
    client: TestClient, world: dict[str, Any], suffix: str
) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    web = client.get(f"/runs.{suffix}?project={pid}&status=failed&task=build,test&q=line")
    api = client.get(
        f"/api/v1/runs.{suffix}?project_id={pid}&status=failed&task=build&task=test&q=line",
        headers={"X-API-Key": world["key"]},
    )
    assert web.status_code == api.status_code == 200
    assert web.content == api.content and len(web.content.splitlines()) > 2
    assert web.headers["content-type"] == api.headers["content-type"]
    assert "attachment" in web.headers["content-disposition"]


def test_saved_views_are_kept_per_user_and_capped(
    app: FastAPI, client: TestClient, world: dict[str, Any]
) -> None:
    token = form_login(client, "owner@example.com")
    pid = world["project"].id
    assert (
        client.post("/runs/views", data={"name": "failed", "query": "status=failed"}).status_code
        == 403
    )
    saved = client.post(
        "/runs/views",
        data={
            "name": " failed  builds ",
            "query": f"project={pid}&status=failed",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("status=failed")
    again = client.post(
        "/runs/views",
        data={
            "name": "failed builds",
            "query": f"project={pid}&status=queued",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert again.status_code == 303
    page = client.get(f"/runs?project={pid}")
    assert page.text.count(">failed builds</a>") == 1
    assert f'href="/runs?project={pid}&amp;status=queued"' in page.text
    too_long = client.post("/runs/views", data={"name": "x" * 101, "csrf_token": token})
    assert too_long.status_code == 422
    blank = client.post("/runs/views", data={"name": "   ", "csrf_token": token})
    assert blank.status_code == 422
    with transaction(app) as session:
        for n in range(saved_views.MAX_VIEWS_PER_PAGE - 1):
            saved_views.save_view(
                session=session, user_id=world["owner"].id, page="runs", name=f"v{n}", query=""
            )
    full = client.post("/runs/views", data={"name": "one more", "csrf_token": token})
    assert full.status_code == 409 and "50 saved views" in full.text
    replaced = client.post(
        "/runs/views",
        data={"name": "v1", "query": "status=failed", "csrf_token": token},
        follow_redirects=False,
    )
    assert replaced.status_code == 303  # replacing one is still possible at the cap
    # Another user sees none of them and cannot delete them.
    view_id = re.search(r'action="/runs/views/(\d+)/delete"', page.text)
    assert view_id is not None
    client.cookies.clear()
    other_token = form_login(client, "stranger@example.com")
    assert "failed builds" not in client.get("/runs").text
    refused = client.post(f"/runs/views/{view_id[1]}/delete", data={"csrf_token": other_token})
    assert refused.status_code == 404
    client.cookies.clear()
    token = form_login(client, "owner@example.com")
    deleted = client.post(
        f"/runs/views/{view_id[1]}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert deleted.status_code == 303
    assert "failed builds" not in client.get(f"/runs?project={pid}").text


def test_histogram_counts_the_filtered_runs(client: TestClient, world: dict[str, Any]) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    chart = client.get(
        f"/runs/histogram?project={pid}&status=failed", headers={"HX-Request": "true"}
    )
    assert chart.status_code == 200 and "<svg" in chart.text
    assert "Runs per status over time: 8 runs" in chart.text  # 30 runs, every 4th from 1
    assert 'class="s-failed"' in chart.text and 'class="s-completed"' not in chart.text
    page = client.get(f"/runs/histogram?project={pid}&since=2026-03-01T12:10:00Z")
    assert page.status_code == 200 and "<h1>Runs per status over time</h1>" in page.text
    assert "Runs per status over time: 20 runs" in page.text
    none = client.get(f"/runs/histogram?project={pid}&task=nothing", headers={"HX-Request": "true"})
    assert "No runs to chart" in none.text


def test_new_runs_are_counted_and_listed(client: TestClient, world: dict[str, Any]) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    newest = max(world["ids"])  # the latest started_at too
    indicator = client.get(f"/runs/new?project={pid}&after={newest}")
    assert indicator.status_code == 200 and "new run" not in indicator.text
    added = record(
        client,
        world["key"],
        [{"task": "build", "status": "running", "started_at": "2026-03-02T00:00:00Z"}] * 2
        + [{"task": "deploy", "status": "running", "started_at": "2026-03-02T00:00:00Z"}],
    )
    indicator = client.get(f"/runs/new?project={pid}&task=build&after={newest}")
    assert "2 new runs" in indicator.text
    rows = client.get(
        f"/runs/new/rows?project={pid}&task=build&after={newest}", headers={"HX-Request": "true"}
    )
    assert run_ids(rows.text) == sorted(added[:2], reverse=True)
    assert rows.headers["HX-Trigger-After-Settle"] == "runs-check-new"
    assert client.get(f"/runs/new?project={pid}&after=x").status_code == 422


def test_retention_overlay(app: FastAPI, client: TestClient, world: dict[str, Any]) -> None:
    form_login(client, "owner@example.com")
    pid = world["project"].id
    recent = record(client, world["key"], [{"task": "fresh", "status": "completed"}])[0]
    with transaction(app) as session:
        add_hold(
            session, scope=HoldScope.RUN, target_id=str(world["ids"][0]), reason="audit", actor="t"
        )
    page = client.get(f"/runs?project={pid}&limit=1000")
    row = re.search(rf'<tr data-run="{world["ids"][0]}">.*?</tr>', page.text, re.S)
    assert row is not None and "badge-hold" in row[0]
    fresh = re.search(rf'<tr data-run="{recent}">.*?</tr>', page.text, re.S)
    assert fresh is not None and "eligible for deletion under default in 90 days" in fresh[0]
    running = re.search(rf'<tr data-run="{world["ids"][2]}">.*?</tr>', page.text, re.S)
    assert running is not None and "no rule picks it" in running[0]
    detail = client.get(f"/runs/{world['ids'][0]}")
    assert detail.status_code == 200 and "badge-hold" in detail.text
    inputs = re.search(
        r'<pre class="runs-pre"[^>]*aria-label="Inputs">(.*?)</pre>', detail.text, re.S
    )
    assert inputs is not None, detail.text
    assert inputs[1] == (
        "{\n  &#34;i&#34;: 0,\n  &#34;text&#34;: &#34;a \\&#34;quoted\\&#34; &lt;b&gt;&#34;\n}"
    )


def test_empty_states(app: FastAPI, client: TestClient) -> None:
    owner = make_user(app, "new@example.com")
    form_login(client, "new@example.com")
    assert "You have no project yet" in client.get("/runs").text
    project = make_project(app, owner, "empty")
    page = client.get(f"/runs?project={project.id}")
    assert "No runs yet — record one with <code>POST /api/v1/runs</code>" in page.text
    filtered = client.get(f"/runs?project={project.id}&status=failed")
    assert "No runs match these filters" in filtered.text
    agent = make_agent(app, project, "worker")
    assert agent.name == "worker"
