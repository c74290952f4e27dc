"""The retention console over plain HTTP: superusers only on every route, CSRF on every POST,
a typed confirmation checked on the server, and bad input or ids answered 4xx, never 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from taskledger.store.models import RetentionRun, Run
from taskledger.store.types import utcnow
from taskledger.web.pages import PageRoute
from tests.helpers import make_user, state_of, transaction
from tests.retention.engine_helpers import old_and_new_runs
from tests.web.http_login import form_login


@pytest.fixture
def web(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def runs(app: FastAPI) -> int:
    with transaction(app) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def retention_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, PageRoute) and route.path_format.startswith(
            "/retention"
        ):
            path = route.path_format.replace("{run_id}", "1").replace("{hold_id}", "1")
            found.extend((m, path) for m in sorted(route.methods or ()) if m != "HEAD")
    return found


def test_only_superusers_reach_any_retention_route(app: FastAPI, web: TestClient) -> None:
    make_user(app, "owner@example.com")
    token = form_login(web, "owner@example.com")
    routes = retention_routes(app)
    assert {path for _, path in routes} >= {
        "/retention",
        "/retention/preview",
        "/retention/execute",
        "/retention/runs",
        "/retention/runs/1",
        "/retention/holds",
        "/retention/holds/1/release",
        "/retention/archives",
        "/retention/archives/verify",
        "/retention/archives/restore",
    }
    for method, path in routes:
        answer = web.request(method, path, data={"csrf_token": token} if method == "POST" else None)
        assert answer.status_code == 403, (method, path)
        assert "This needs a superuser" in answer.text and "Not allowed" in answer.text
    with TestClient(app) as anonymous:
        assert anonymous.get("/retention", follow_redirects=False).status_code == 303


def test_posts_need_the_csrf_token(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    form_login(web, "root@example.com")
    before = len(_audit(app))
    assert web.post("/retention/preview").status_code == 403
    assert web.post("/retention/preview", data={"csrf_token": "forged"}).status_code == 403
    assert web.post("/retention/holds", data={"scope": "run", "target_id": "1"}).status_code == 403
    assert len(_audit(app)) == before


def _audit(app: FastAPI) -> list[RetentionRun]:
    with transaction(app) as session:
        return list(session.scalars(select(RetentionRun).order_by(RetentionRun.id)))


def _preview(web: TestClient, token: str) -> tuple[int, str]:
    answer = web.post("/retention/preview", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    page = web.get(answer.headers["location"])
    plan = re.search(r'id="plan-id">([0-9a-f]+)<', page.text)
    assert plan is not None
    return int(answer.headers["location"].rsplit("/", 1)[1]), plan.group(1)


def test_a_wrong_confirmation_executes_nothing(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    old_and_new_runs(state_of(app).engine, 3, 5)
    token = form_login(web, "root@example.com")
    _, plan = _preview(web, token)
    for confirm in ("", "Default", "ops", "default!"):
        data = {"csrf_token": token, "plan_id": plan, "confirm": confirm}
        answer = web.post("/retention/execute", data=data)
        assert answer.status_code == 400, confirm
        assert "Type the policy name “default” exactly" in answer.text
    assert runs(app) == 8
    assert [row.mode for row in _audit(app)] == ["preview"]

    unknown = {"csrf_token": token, "plan_id": "0" * 32, "confirm": "default"}
    refused = web.post("/retention/execute", data=unknown)
    assert refused.status_code == 409 and "No preview has plan_id" in refused.text
    assert web.post("/retention/execute", data={"csrf_token": token}).status_code == 422

    done = web.post(
        "/retention/execute",
        data={"csrf_token": token, "plan_id": plan, "confirm": " default "},
        follow_redirects=False,
    )
    assert done.status_code == 303 and runs(app) == 5
    again = web.post(
        "/retention/execute", data={"csrf_token": token, "plan_id": plan, "confirm": "default"}
    )
    assert again.status_code == 409 and "already executed" in again.text and runs(app) == 5
    page = web.get(done.headers["location"])
    assert "user:root@example.com" in page.text and ">3<" in page.text
    assert [(r.mode, r.outcome, r.actor) for r in _audit(app)][-1] == (
        "execute",
        "refused",
        "user:root@example.com",
    )


def test_a_plan_over_the_table_cap_needs_force_and_a_reason(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    old_and_new_runs(state_of(app).engine, 6, 2)
    token = form_login(web, "root@example.com")
    _, plan = _preview(web, token)
    data = {"csrf_token": token, "plan_id": plan, "confirm": "default"}
    capped = web.post("/retention/execute", data=data)
    assert capped.status_code == 409 and runs(app) == 8
    assert "max_table_fraction" in capped.text or "fraction" in capped.text
    forced = web.post(
        "/retention/execute",
        data={**data, "force": "true", "reason": "old test data"},
        follow_redirects=False,
    )
    assert forced.status_code == 303 and runs(app) == 2


def test_bad_ids_and_bad_input_are_4xx(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    token = form_login(web, "root@example.com")
    for path in (
        "/retention/runs/abc",
        "/retention/runs/0",
        "/retention/runs/-1",
        "/retention/runs/999999",
        "/retention/runs/99999999999999999999999",
    ):
        answer = web.get(path)
        assert answer.status_code == 404, path
        assert "Not found" in answer.text
    for path in ("/retention/holds/abc/release", "/retention/holds/999999/release"):
        assert web.post(path, data={"csrf_token": token}).status_code == 404, path
    for query in ("mode=bad", "outcome=nope", "limit=0", "limit=100000", "cursor=garbage"):
        answer = web.get(f"/retention/runs?{query}")
        assert 400 <= answer.status_code < 500, query
    assert web.get("/retention/holds?limit=abc").status_code == 422
    assert web.get("/retention/runs?mode=&outcome=").status_code == 200

    def hold(**fields: str) -> int:
        return web.post("/retention/holds", data={"csrf_token": token, **fields}).status_code

    assert hold(scope="planet", target_id="1", reason="r") == 400
    assert hold(scope="run", target_id="1", reason=" ") == 400
    assert hold(scope="run", target_id="999999", reason="legal") == 404
    assert hold(scope="project", target_id="not-a-uuid", reason="legal") == 404
    assert hold(scope="run", target_id="1" * 100, reason="legal") == 422

    def archive(path: str, **fields: str) -> int:
        answer = web.post(f"/retention/archives/{path}", data={"csrf_token": token, **fields})
        return answer.status_code

    assert archive("verify", uri="/etc") == 422
    assert archive("verify", uri="../../etc") == 422
    assert archive("verify", uri="2026/01/nothing-here") == 404
    assert archive("verify") == 422
    assert archive("restore", uri="/etc/passwd", dry_run="true") == 422
    assert archive("restore", uri="2026/01/nothing-here", dry_run="true") == 404


def test_holds_are_placed_listed_and_released(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    old_and_new_runs(state_of(app).engine, 2, 0)
    with transaction(app) as session:
        run_id = session.scalar(select(func.min(Run.id)))
    token = form_login(web, "root@example.com")
    placed = web.post(
        "/retention/holds",
        data={"csrf_token": token, "scope": "run", "target_id": str(run_id), "reason": "legal"},
        follow_redirects=False,
    )
    assert placed.status_code == 303
    page = web.get("/retention/holds?active=true")
    hold = re.search(r'action="/retention/holds/(\d+)/release"', page.text)
    assert hold is not None and "legal" in page.text
    release = f"/retention/holds/{hold.group(1)}/release"
    assert web.post(release, data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert web.post(release, data={"csrf_token": token}).status_code == 409
    assert "No active hold" in web.get("/retention/holds?active=true").text
    assert "released" in web.get("/retention/holds").text


def test_the_audit_log_pages_by_keyset(app: FastAPI, web: TestClient) -> None:
    make_user(app, "root@example.com", superuser=True)
    token = form_login(web, "root@example.com")
    for _ in range(5):
        _preview(web, token)
    seen: list[str] = []
    url: str | None = "/retention/runs?mode=preview&limit=2"
    while url:
        page = web.get(url, headers={"HX-Request": "true"} if "cursor" in url else {})
        assert page.status_code == 200
        seen += re.findall(r'<tr data-run="(\d+)"', page.text)
        more = re.search(r'href="(/retention/runs\?[^"]+)" hx-get', page.text)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert seen == [str(n) for n in range(5, 0, -1)]
    none = web.get("/retention/runs?mode=restore")
    assert "No retention run matches these filters" in none.text


def test_histograms_and_the_expiring_timeline(app: FastAPI, web: TestClient) -> None:
    """Runs 200 days old are eligible under the default preset's 90-day rule now; 85 days old,
    within 7 days; 70 days old, within 30 days."""
    make_user(app, "root@example.com", superuser=True)
    project_id, _ = old_and_new_runs(state_of(app).engine, 2, 1)
    now = utcnow()
    with transaction(app) as session:
        for days, status in ((85, "completed"), (70, "failed"), (70, "running"), (400, "failed")):
            session.add(
                Run(
                    project_id=project_id,
                    task="t",
                    run_id=f"r{days}{status}",
                    status=status,
                    started_at=now - timedelta(days=days),
                )
            )
    form_login(web, "root@example.com")
    page = web.get("/retention").text
    expiring = page[page.index('id="expiring"') :]
    row = re.search(r"<code>runs-terminal</code>.*?</tr>", expiring, re.S)
    assert row is not None
    assert re.findall(r'class="num">\+?([0-9,]+)<', row.group(0)) == ["3", "1", "2"]
    runs_card = re.search(r'id="ages-runs".*?</figure>', page, re.S)
    assert runs_card is not None
    card = runs_card.group(0)
    assert "<svg" in card and "7 rows" in card
    cells = dict(re.findall(r'<th scope="row">([^<]+)</th>((?:<td class="num">\d+</td>)+)', card))
    assert re.findall(r"\d+", cells["90-365d"]) == ["0", "0", "0", "2", "0", "0"]
    assert re.findall(r"\d+", cells["30-90d"]) == ["0", "1", "0", "1", "1", "0"]
    assert re.findall(r"\d+", cells["&gt;365d"]) == ["0", "0", "0", "0", "1", "0"]
    assert re.findall(r"\d+", cells["&lt;1d"]) == ["0"] * 6
