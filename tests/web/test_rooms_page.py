"""The Rooms page in a real browser (rooms with their counts, filters, a room's participants
and tasks, the way to the room's tasks on the Tasks page) and its edge cases over plain HTTP."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.enums import ParticipantType, RoomRole
from taskledger.schemas.rooms import ParticipantJoin, RoomUpdate
from taskledger.services import rooms
from taskledger.store.models import Room
from tests.helpers import make_agent, make_project, make_task, make_user, transaction
from tests.web.conftest import LiveServer, fits_a_phone, log_in, serious_violations
from tests.web.test_tasks_page import make_room, web_client


def join(
    app: FastAPI,
    room: Room,
    kind: ParticipantType,
    who: uuid.UUID,
    role: RoomRole = RoomRole.MEMBER,
) -> None:
    with transaction(app) as session:
        row = session.get(Room, room.id)
        assert row is not None
        data = ParticipantJoin(participant_type=kind, participant_id=who, role=role)
        rooms.join_room(session=session, room=row, data=data)


def leave(app: FastAPI, room: Room, who: uuid.UUID) -> None:
    with transaction(app) as session:
        row = session.get(Room, room.id)
        assert row is not None
        rooms.leave_room(session=session, room=row, participant_id=who)


def archive(app: FastAPI, room: Room) -> None:
    with transaction(app) as session:
        row = session.get(Room, room.id)
        assert row is not None
        rooms.update_room(session=session, room=row, changes=RoomUpdate(archived=True))


def test_rooms_participants_and_tasks(page: Any, live: LiveServer) -> None:
    app = live.app
    owner = make_user(app, "owner@example.com")
    project = make_project(app, owner, "alpha")
    builder = make_agent(app, project, "builder")
    critic = make_agent(app, project, "critic")
    design = make_room(app, project, "design")
    old = make_room(app, project, "old-plans")
    make_room(app, project, "quiet")
    join(app, design, ParticipantType.USER, owner.id, RoomRole.OWNER)
    join(app, design, ParticipantType.AGENT, builder.id)
    join(app, design, ParticipantType.AGENT, critic.id, RoomRole.OBSERVER)
    leave(app, design, critic.id)
    join(app, old, ParticipantType.AGENT, builder.id)
    draft = make_task(app, project, "Draft layout", room_id=design.id)
    make_task(app, project, "Pick colours", room_id=design.id, dependencies=[draft.id])
    make_task(app, project, "Outside any room")
    archive(app, old)

    log_in(page, "owner@example.com")
    page.goto("/rooms")
    row = page.locator(f"#room-{design.id}")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "open"
    assert cells[2].startswith("2") and "+1 past" in cells[2]
    assert cells[3].startswith("2")
    assert "archived" in page.locator(f"#room-{old.id}").inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    page.get_by_label("State").select_option("archived")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"state=archived"))
    assert page.locator("#room-rows th a").all_inner_texts() == ["old-plans"]
    page.get_by_label("Name contains").fill("DES")
    page.get_by_label("State").select_option("any")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"name=DES"))
    assert page.locator("#room-rows th a").all_inner_texts() == ["design"]
    page.get_by_label("Name contains").fill("nothing-like-it")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"name=nothing"))
    assert "No rooms match these filters" in page.locator("main").inner_text()
    assert serious_violations(page) == []
    page.go_back()
    page.wait_for_url(re.compile(r"name=DES"))

    page.get_by_role("link", name="design", exact=True).click()
    page.wait_for_url(f"**/rooms/{design.id}")
    people = page.get_by_role("table", name="Participants")
    texts = [people.locator("tbody tr").nth(i).inner_text() for i in range(3)]
    assert "owner@example.com" in texts[0] and "owner" in texts[0] and "active" in texts[0]
    assert "builder" in texts[1] and "member" in texts[1] and "active" in texts[1]
    assert "critic" in texts[2] and "observer" in texts[2] and "past" in texts[2]
    room_tasks = page.get_by_role("table", name="Tasks")
    assert room_tasks.locator("tbody th a").all_inner_texts() == ["Draft layout", "Pick colours"]
    assert "Draft layout" in room_tasks.locator("tbody tr").nth(1).inner_text()  # blocked by
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    # The room's tasks on the Tasks page: filtered by room.
    page.get_by_role("link", name="see them on the Tasks page").click()
    page.wait_for_url(re.compile(rf"/tasks\?project={project.id}&room_id={design.id}"))
    assert page.locator("tr[data-task-row] th a").all_inner_texts() == [
        "Draft layout",
        "Pick colours",
    ]
    assert page.get_by_label("Room").input_value() == str(design.id)

    # A room with nobody and no tasks says what to do next.
    page.goto("/rooms?project=" + str(project.id))
    page.get_by_role("link", name="quiet", exact=True).click()
    page.wait_for_url("**/rooms/*")
    main = page.locator("main").inner_text()
    assert "No one has joined this room yet" in main
    assert "No tasks in this room yet" in main
    assert serious_violations(page) == []


def test_no_rooms_yet(page: Any, live: LiveServer) -> None:
    owner = make_user(live.app, "owner@example.com")
    make_project(live.app, owner, "alpha")
    log_in(page, "owner@example.com")
    page.goto("/rooms")
    empty = page.locator(".empty")
    assert "No rooms yet" in empty.inner_text() and "POST /api/v1/rooms" in empty.inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)


# --- plain HTTP -------------------------------------------------------------------------------


@pytest.fixture
def two_rooms(app: FastAPI) -> dict[str, Any]:
    owner = make_user(app, "owner@example.com")
    stranger = make_user(app, "stranger@example.com")
    mine = make_project(app, owner, "alpha")
    theirs = make_project(app, stranger, "beta")
    return {
        "project": mine,
        "mine": make_room(app, mine, "mine"),
        "theirs": make_room(app, theirs, "theirs"),
    }


def test_another_users_room_is_not_found(app: FastAPI, two_rooms: dict[str, Any]) -> None:
    with web_client(app, "owner@example.com") as (client, _token):
        page = client.get(f"/rooms/{two_rooms['theirs'].id}")
        assert page.status_code == 404 and "Not found" in page.text
        assert "theirs" not in page.text
        assert client.get(f"/rooms/{uuid.uuid4()}").status_code == 404
        assert client.get(f"/rooms?project={two_rooms['theirs'].project_id}").status_code == 404
        listing = client.get("/rooms")
        assert "mine" in listing.text and "theirs" not in listing.text
        assert client.get(f"/rooms/{two_rooms['mine'].id}").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/rooms/not-an-id",
        "/rooms?state=deleted",
        "/rooms?cursor=garbage",
        "/rooms?name=%00",
        "/rooms?name=" + "x" * 300,
        "/rooms?project=nope",
        "/rooms/{mine}?cursor=garbage",
    ],
)
def test_bad_input_is_a_4xx_page(app: FastAPI, two_rooms: dict[str, Any], url: str) -> None:
    with web_client(app, "owner@example.com") as (client, _token):
        page = client.get(url.format(mine=two_rooms["mine"].id))
    assert 400 <= page.status_code < 500, page.text
    assert page.headers["content-type"].startswith("text/html")


def test_rooms_need_a_login(app: FastAPI, two_rooms: dict[str, Any]) -> None:
    with TestClient(app, follow_redirects=False) as client:
        for url in ("/rooms", f"/rooms/{two_rooms['mine'].id}"):
            answer = client.get(url)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_a_post_without_the_csrf_token_is_refused(app: FastAPI, two_rooms: dict[str, Any]) -> None:
    # The Rooms page changes nothing itself; its rooms' tasks are started on the Tasks page.
    project, room = two_rooms["project"], two_rooms["mine"]
    task = make_task(app, project, "in the room", room_id=room.id).id
    with web_client(app, "owner@example.com") as (client, token):
        assert client.post(f"/tasks/{task}/start").status_code == 403
        assert client.post(f"/tasks/{task}/start", data={"csrf_token": token}).status_code == 303
