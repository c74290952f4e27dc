"""The retention console's holds: list them, place one on a project, agent, task, run, session
or room, and release one. A held record, and everything beneath it, is left alone by every
retention rule and delete path (see :mod:`taskledger.retention.plan.holds`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from taskledger.enums import HoldScope
from taskledger.errors import BadRequestError, NotFoundError
from taskledger.retention.plan import holds
from taskledger.web.deps import SessionDep
from taskledger.web.pages import is_htmx, page_router, pages_of
from taskledger.web.views.retention import PAGE_SIZE, SuperuserDep, more_url, parse_int_id

router = page_router()


def _render(
    request: Request,
    session: SessionDep,
    *,
    active: bool = False,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    with session.begin():
        rows, next_cursor = holds.list_holds(
            session, active_only=active, limit=limit, cursor=cursor
        )
        for row in rows:
            session.expunge(row)
    context = {
        "page": "retention",
        "section": "holds",
        "holds": rows,
        "next_cursor": next_cursor,
        "active": active,
        "limit": limit,
        "scopes": [s.value for s in HoldScope],
        "form": form or {},
        "error": error,
        "more_url": more_url(
            "/retention/holds", active="true" if active else "", limit=limit, cursor=next_cursor
        ),
    }
    name = "_retention_holds_rows.html" if is_htmx(request) and cursor else "retention_holds.html"
    return pages_of(request).render(request, name, context, status_code=status_code)


@router.get("/retention/holds")
def hold_list(
    request: Request,
    principal: SuperuserDep,
    session: SessionDep,
    active: Annotated[bool, Query()] = False,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
) -> Response:
    """Holds, newest first (``active=true``: only those not released), and the form to add one."""
    return _render(request, session, active=active, cursor=cursor, limit=limit)


@router.post("/retention/holds")
def add_hold(
    request: Request,
    principal: SuperuserDep,
    session: SessionDep,
    scope: Annotated[str, Form(max_length=16)] = "",
    target_id: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Place a hold; an unknown target or a missing field shows the form again with why."""
    form = {"scope": scope, "target_id": target_id, "reason": reason}
    try:
        if scope not in {s.value for s in HoldScope}:
            raise BadRequestError(f"Choose what to hold (one of: {', '.join(HoldScope)}).")
        if not target_id.strip() or not reason.strip():
            raise BadRequestError("A hold needs the id of what it holds and a reason.")
        with session.begin():
            holds.add_hold(
                session,
                scope=HoldScope(scope),
                target_id=target_id.strip(),
                reason=reason.strip(),
                actor=principal.actor,
            )
    except (BadRequestError, NotFoundError) as exc:
        status_code = 404 if isinstance(exc, NotFoundError) else 400
        return _render(request, session, form=form, error=str(exc.detail), status_code=status_code)
    return RedirectResponse("/retention/holds", status_code=303)


@router.post("/retention/holds/{hold_id}/release")
def release_hold(hold_id: str, principal: SuperuserDep, session: SessionDep) -> Response:
    """Release a hold: its rows become eligible again (releasing twice is 409)."""
    number = parse_int_id(hold_id, "hold")
    with session.begin():
        holds.release_hold(session, hold_id=number, actor=principal.actor)
    return RedirectResponse("/retention/holds", status_code=303)
