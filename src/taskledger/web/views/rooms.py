"""The Rooms page: a project's rooms with their participant and task counts, filtered by name
and state; a room's participants (agents and users, active and past) and its tasks."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Query, Request, Response

from taskledger.enums import TERMINAL_STATUSES, Scope
from taskledger.services import rooms, task_board, tasks
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.store.models import Room
from taskledger.store.types import utcnow
from taskledger.web.deps import PrincipalDep, ProjectDep, SessionDep, StateDep, choose_project
from taskledger.web.pages import is_htmx, page_router, pages_of

router = page_router()

CursorParam = Annotated[str | None, Query(max_length=2048)]
#: How many participants and tasks a room's page lists at once.
ROOM_PAGE_LIMIT = 100
_ARCHIVED = {"any": None, "open": False, "archived": True}


@router.get("/rooms")
def rooms_page(
    request: Request,
    session: SessionDep,
    choice: ProjectDep,
    name: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")] = None,
    state: Literal["any", "open", "archived"] = "any",
    cursor: CursorParam = None,
) -> Response:
    """The table of rooms; htmx's "Load more" asks for the next rows only."""
    name = (name or "").strip() or None
    found: list[tuple[Room, task_board.RoomCounts]] = []
    next_cursor = None
    if choice.current is not None:
        with session.begin():
            page_rooms, next_cursor = rooms.list_rooms(
                session=session,
                project_id=choice.current.id,
                name_contains=name,
                archived=_ARCHIVED[state],
                limit=DEFAULT_LIMIT,
                cursor=cursor,
            )
            counts = task_board.room_counts(session=session, room_ids=[r.id for r in page_rooms])
            found = [(room, counts[room.id]) for room in page_rooms]
    query = [("project", str(choice.current.id))] if choice.current else []
    query += [("name", name)] if name else []
    query += [("state", state)] if state != "any" else []
    context = {
        "page": "rooms",
        "choice": choice,
        "rooms": found,
        "next_cursor": next_cursor,
        "query": query,
        "name": name or "",
        "state": state,
        "filtered": bool(name) or state != "any",
        "continued": cursor is not None,
    }
    template = "_rooms_rows.html" if is_htmx(request) and cursor else "rooms.html"
    return pages_of(request).render(request, template, context)


@router.get("/rooms/{room_id}")
def room_page(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    state: StateDep,
    room_id: uuid.UUID,
    cursor: CursorParam = None,
) -> Response:
    """A room: who takes part (``cursor`` pages the participants) and its tasks."""
    with session.begin():
        room = rooms.get_room(
            session=session, principal=principal, room_id=room_id, need=Scope.READ
        )
        participations, next_cursor = rooms.list_participants(
            session=session, room=room, limit=ROOM_PAGE_LIMIT, cursor=cursor
        )
        people = task_board.participant_rows(session=session, participations=participations)
        room_tasks, more_tasks = tasks.list_tasks(
            session=session,
            project_id=room.project_id,
            room_id=room.id,
            limit=ROOM_PAGE_LIMIT,
            cursor=None,
        )
        task_rows = task_board.task_rows(session=session, task_list=room_tasks)
        counts = task_board.room_counts(session=session, room_ids=[room.id])[room.id]
    choice = choose_project(request, state, project=room.project_id)
    context = {
        "page": "rooms",
        "choice": choice,
        "room": room,
        "counts": counts,
        "people": people,
        "next_cursor": next_cursor,
        "continued": cursor is not None,
        "rows": task_rows,
        "more_tasks": more_tasks is not None,
        "terminal": TERMINAL_STATUSES,
        "now": utcnow(),
    }
    return pages_of(request).render(request, "room_detail.html", context)
