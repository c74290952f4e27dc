"""The Tasks page in a real browser (start a blocked task, see its blockers inline, complete
the blockers, start it; the dependency view; filters; load more) and its edge cases over plain
HTTP (another user's task, bad input, the CSRF check, the page without JavaScript)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.enums import AssigneeType, TaskStatus
from taskledger.schemas.rooms import RoomCreate
from taskledger.services import rooms, tasks
from taskledger.store.models import Project, Room, Task
from tests.helpers import make_agent, make_project, make_task, make_user, transaction
from tests.web.conftest import LiveServer, fits_a_phone, log_in, serious_violations
from tests.web.http_login import form_login


def make_room(app: FastAPI, project: Project, name: str) -> Room:
    with transaction(app) as session:
        return rooms.create_room(
            session=session, project=project, data=RoomCreate(name=name), created_by=None
        )


def set_status(app: FastAPI, task: Task, status: TaskStatus) -> None:
    with transaction(app) as session:
        row = session.get(Task, task.id)
        assert row is not None
        tasks.change_status(session=session, task=row, status=status, reopen=False)


def status_of(app: FastAPI, task: Task) -> str:
    with transaction(app) as session:
        row = session.get(Task, task.id)
        assert row is not None
        return row.status


def build_chain(app: FastAPI) -> dict[str, Any]:
    """Gather notes (done) <- Write spec <- Ship it -> Review spec (started); Ship it <-
    Announce <- Celebrate. Write spec is the agent builder's; Ship it is in the room design."""
    owner = make_user(app, "owner@example.com")
    project = make_project(app, owner, "alpha")
    builder = make_agent(app, project, "builder")
    design = make_room(app, project, "design")
    notes = make_task(app, project, "Gather notes")
    set_status(app, notes, TaskStatus.COMPLETED)
    spec = make_task(
        app,
        project,
        "Write spec",
        dependencies=[notes.id],
        priority="high",
        assignee_type=AssigneeType.AGENT,
        assignee_id=builder.id,
    )
    review = make_task(app, project, "Review spec")
    set_status(app, review, TaskStatus.IN_PROGRESS)
    ship = make_task(
        app,
        project,
        "Ship it",
        dependencies=[spec.id, review.id],
        room_id=design.id,
        due_date=datetime.now(UTC) + timedelta(days=3),
    )
    announce = make_task(app, project, "Announce", dependencies=[ship.id])
    celebrate = make_task(app, project, "Celebrate", dependencies=[announce.id])
    return {
        "builder": builder,
        "design": design,
        "spec": spec,
        "review": review,
        "ship": ship,
        "celebrate": celebrate,
    }


def test_start_blocked_then_complete_the_blockers_and_start(page: Any, live: LiveServer) -> None:
    app = live.app
    chain = build_chain(app)
    spec, review, ship = chain["spec"], chain["review"], chain["ship"]

    log_in(page, "owner@example.com")
    page.goto("/tasks")
    ship_row = page.locator(f"#task-{ship.id}")
    ship_row.wait_for()
    assert page.locator("tr[data-task-row]").count() == 6
    assert "builder" in page.locator(f"#task-{spec.id}").inner_text()
    assert "high" in page.locator(f"#task-{spec.id}").inner_text()
    blocked_by = ship_row.locator("td").nth(4)
    assert blocked_by.get_by_role("link", name="Write spec").count() == 1
    assert blocked_by.get_by_role("link", name="Review spec").count() == 1
    assert ship_row.get_by_role("link", name="design").count() == 1
    assert serious_violations(page) == []

    # Starting it is refused, and the refusal names the blockers next to the task.
    ship_row.get_by_role("button", name="Start Ship it").click()
    alert = page.locator(f"#task-{ship.id} .task-blocked")
    alert.wait_for()
    assert re.search(
        r"Blocked by:\s*Write spec \(pending\),\s*Review spec \(in progress\)", alert.inner_text()
    )
    assert page.locator("#messages").inner_text().strip() == ""  # not a generic error
    assert status_of(app, ship) == "pending"
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    # Complete the blockers: their rows change in place.
    for blocker in (spec, review):
        row = page.locator(f"#task-{blocker.id}")
        row.get_by_role("button", name=re.compile(r"^Complete")).click()
        page.locator(f"#task-{blocker.id} .task-status.badge-completed").wait_for()
        assert page.locator(f"#task-{blocker.id}").get_by_role("button").count() == 0
        assert status_of(app, blocker) == "completed"

    page.locator(f"#task-{ship.id}").get_by_role("button", name="Start Ship it").click()
    page.locator(f"#task-{ship.id} .task-status.badge-in_progress").wait_for()
    assert page.locator(f"#task-{ship.id} .task-blocked").count() == 0
    assert page.locator(f"#task-{ship.id}").get_by_role("button", name="Start Ship it").count() == 0
    assert status_of(app, ship) == "in_progress"
    page.locator(f"#task-{ship.id}").get_by_role("button", name="Complete Ship it").click()
    page.locator(f"#task-{ship.id} .task-status.badge-completed").wait_for()
    assert status_of(app, ship) == "completed"
    assert serious_violations(page) == []

    # After a reload, the server's view agrees.
    page.reload()
    assert "none (all done)" in page.locator(f"#task-{ship.id}").inner_text()


def test_dependency_view_and_filters(page: Any, live: LiveServer) -> None:
    chain = build_chain(live.app)
    builder, design, ship = chain["builder"], chain["design"], chain["ship"]
    log_in(page, "owner@example.com")

    # The dependency view: upstream (transitively) and downstream (transitively).
    page.goto(f"/tasks/{ship.id}")
    upstream = page.get_by_role("list", name="Upstream tasks")
    downstream = page.get_by_role("list", name="Downstream tasks")
    assert upstream.locator("> li > a").all_inner_texts() == ["Write spec", "Review spec"]
    nested = upstream.locator("li", has_text="Write spec").locator("ul a")
    assert nested.all_inner_texts() == ["Gather notes"]
    assert downstream.locator("> li > a").all_inner_texts() == ["Announce"]
    assert downstream.locator("li li a").all_inner_texts() == ["Celebrate"]
    assert "builder" not in page.locator("dl.props").inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)
    downstream.get_by_role("link", name="Celebrate").click()
    page.wait_for_url(f"**/tasks/{chain['celebrate'].id}")
    up = page.get_by_role("list", name="Upstream tasks")
    # Celebrate <- Announce <- Ship it <- (Write spec <- Gather notes, Review spec)
    assert up.get_by_role("link", name="Gather notes").count() == 1
    assert "no task depends on this one" in page.locator("main").inner_text()

    # Filter by room, by status and by assignee: the filters live in the URL.
    page.goto("/tasks")
    page.get_by_label("Room").select_option(label="design")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(rf"room_id={design.id}"))
    assert page.locator("tr[data-task-row] th a").all_inner_texts() == ["Ship it"]
    page.get_by_role("link", name="Reset").click()
    page.wait_for_url(re.compile(r"/tasks\?project=[^&]+$"))
    page.locator("label.pill", has_text="pending").click()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"status=pending"))
    titles = page.locator("tr[data-task-row] th a").all_inner_texts()
    assert titles == ["Write spec", "Ship it", "Announce", "Celebrate"]
    page.get_by_label("Assignee").select_option(label="builder")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(rf"assignee={builder.id}"))
    assert page.locator("tr[data-task-row] th a").all_inner_texts() == ["Write spec"]
    page.locator("label.pill", has_text="pending").click()
    page.locator("label.pill", has_text="in progress").click()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"status=in_progress"))
    assert "No tasks match these filters" in page.locator("main").inner_text()
    assert serious_violations(page) == []
    page.go_back()
    page.wait_for_url(re.compile(r"status=pending"))
    assert page.locator("tr[data-task-row] th a").all_inner_texts() == ["Write spec"]
    assert page.get_by_label("Assignee").input_value() == str(builder.id)


def test_load_more_and_empty_state(page: Any, live: LiveServer) -> None:
    app = live.app
    owner = make_user(app, "owner@example.com")
    empty = make_project(app, owner, "a-empty")
    busy = make_project(app, owner, "b-busy")
    log_in(page, "owner@example.com")
    page.goto("/tasks")  # the first project by name
    empty_state = page.locator(".empty")
    assert "No tasks yet" in empty_state.inner_text()
    assert "POST /api/v1/tasks" in empty_state.inner_text()
    assert str(empty.id) in empty_state.inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    with transaction(app) as session:
        from taskledger.schemas.tasks import TaskCreate

        for n in range(53):
            tasks.create_task(
                session=session,
                project=busy,
                data=TaskCreate(title=f"task {n:02d}"),
                created_by=None,
            )
    page.get_by_label("Project").select_option(label="b-busy")
    page.wait_for_url(re.compile(rf"project={busy.id}"))
    rows = page.locator("tr[data-task-row]")
    assert rows.count() == 50
    page.get_by_role("link", name="Load more").click()
    page.wait_for_function("() => document.querySelectorAll('tr[data-task-row]').length === 53")
    assert page.get_by_role("link", name="Load more").count() == 0
    titles = page.locator("tr[data-task-row] th a").all_inner_texts()
    assert titles == [f"task {n:02d}" for n in range(53)]
    assert serious_violations(page) == []


# --- plain HTTP -------------------------------------------------------------------------------


@contextmanager
def web_client(app: FastAPI, email: str) -> Iterator[tuple[TestClient, str]]:
    """A client logged in through the login form, and its session's CSRF token."""
    with TestClient(app, follow_redirects=False) as client:
        yield client, form_login(client, email)


@pytest.fixture
def two_owners(app: FastAPI) -> dict[str, Any]:
    owner = make_user(app, "owner@example.com")
    stranger = make_user(app, "stranger@example.com")
    mine = make_project(app, owner, "alpha")
    theirs = make_project(app, stranger, "beta")
    first = make_task(app, mine, "first")
    second = make_task(app, mine, "second", dependencies=[first.id])
    foreign = make_task(app, theirs, "foreign")
    return {"project": mine, "other": theirs, "first": first, "second": second, "foreign": foreign}


def test_another_users_task_is_not_found(app: FastAPI, two_owners: dict[str, Any]) -> None:
    with web_client(app, "owner@example.com") as (client, token):
        foreign = two_owners["foreign"]
        page = client.get(f"/tasks/{foreign.id}")
        assert page.status_code == 404 and "Not found" in page.text
        assert "foreign" not in page.text
        assert client.get(f"/tasks/{uuid.uuid4()}").status_code == 404
        assert client.get(f"/tasks?project={two_owners['other'].id}").status_code == 404
        started = client.post(f"/tasks/{foreign.id}/start", data={"csrf_token": token})
        assert started.status_code == 404
        assert status_of(app, foreign) == "pending"
        listing = client.get("/tasks")
        assert "first" in listing.text and "foreign" not in listing.text


@pytest.mark.parametrize(
    "url",
    [
        "/tasks/not-an-id",
        "/tasks?status=bogus",
        "/tasks?assignee=nobody",
        "/tasks?room_id=12",
        "/tasks?cursor=garbage",
        "/tasks?project=nope",
        "/tasks?cursor=" + "x" * 3000,
    ],
)
def test_bad_input_is_a_4xx_page(app: FastAPI, two_owners: dict[str, Any], url: str) -> None:
    with web_client(app, "owner@example.com") as (client, _token):
        page = client.get(url)
    assert 400 <= page.status_code < 500, page.text
    assert page.headers["content-type"].startswith("text/html")


def test_a_cursor_of_other_filters_is_refused(app: FastAPI, two_owners: dict[str, Any]) -> None:
    for n in range(51):
        make_task(app, two_owners["project"], f"more {n}")
    with web_client(app, "owner@example.com") as (client, _token):
        first = client.get("/tasks")
        cursor = re.search(r"cursor=([^\"&]+)", first.text)
        assert cursor is not None
        more = client.get(f"/tasks?cursor={cursor.group(1)}", headers={"HX-Request": "true"})
        assert more.status_code == 200 and "<html" not in more.text
        assert more.text.count("data-task-row") == 3  # 53 tasks: 50, then 3
        other = client.get(f"/tasks?status=pending&cursor={cursor.group(1)}")
        assert other.status_code == 400


def test_state_changes_need_the_csrf_token(app: FastAPI, two_owners: dict[str, Any]) -> None:
    first = two_owners["first"]
    with web_client(app, "owner@example.com") as (client, token):
        for action in ("start", "complete"):
            refused = client.post(f"/tasks/{first.id}/{action}")
            assert refused.status_code == 403
            forged = client.post(f"/tasks/{first.id}/{action}", data={"csrf_token": "forged"})
            assert forged.status_code == 403
        assert status_of(app, first) == "pending"
        bad_id = client.post("/tasks/not-an-id/start", data={"csrf_token": token})
        assert bad_id.status_code == 422


def test_start_and_complete_without_javascript(app: FastAPI, two_owners: dict[str, Any]) -> None:
    first, second = two_owners["first"], two_owners["second"]
    with web_client(app, "owner@example.com") as (client, token):
        blocked = client.post(f"/tasks/{second.id}/start", data={"csrf_token": token})
        assert blocked.status_code == 409
        assert re.search(
            r"Blocked by:\s*<a href=\"/tasks/[^\"]+\">first</a> \(pending\)", blocked.text
        )
        assert status_of(app, second) == "pending"
        done = client.post(
            f"/tasks/{first.id}/complete",
            data={"csrf_token": token, "next": "/tasks?status=pending"},
        )
        assert done.status_code == 303 and done.headers["location"] == "/tasks?status=pending"
        elsewhere = client.post(
            f"/tasks/{second.id}/start", data={"csrf_token": token, "next": "https://evil.example/"}
        )
        assert elsewhere.status_code == 303 and elsewhere.headers["location"].startswith("/")
        assert status_of(app, second) == "in_progress"
        # htmx gets the row: 409 with the blockers (tasks.js swaps it in), or 200.
        third = make_task(app, two_owners["project"], "third", dependencies=[second.id])
        headers = {"HX-Request": "true", "X-CSRF-Token": token}
        row = client.post(f"/tasks/{third.id}/start", headers=headers)
        assert row.status_code == 409 and row.headers["x-task-blocked"] == "1"
        assert row.text.lstrip().startswith("<tr") and "second</a> (in progress)" in row.text
        row = client.post(f"/tasks/{second.id}/complete", headers=headers)
        assert row.status_code == 200 and "badge-completed" in row.text
        again = client.post(f"/tasks/{second.id}/complete", headers=headers)
        assert again.status_code == 200  # already there: nothing changes
