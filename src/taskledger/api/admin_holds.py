"""``/api/v1/admin/holds``: place, list and release retention holds (superusers, admin key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from taskledger.api.deps import CursorQuery, IntId, LimitQuery, PrincipalDep, SessionDep
from taskledger.api.routing import LedgerRoute
from taskledger.retention.plan import holds
from taskledger.schemas.limits import QueryFlag
from taskledger.schemas.retention import HoldCreate, HoldPage, HoldRead
from taskledger.services.access import require_admin
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/admin/holds", tags=["admin"], route_class=LedgerRoute)


@router.post("", response_model=HoldRead, status_code=status.HTTP_201_CREATED)
def add(body: HoldCreate, principal: PrincipalDep, session: SessionDep) -> HoldRead:
    """Hold a project, agent, task, run or session: no rule or delete path touches it (or
    anything beneath it) until the hold is released."""
    require_admin(principal)
    with session.begin():
        hold = holds.add_hold(
            session,
            scope=body.scope,
            target_id=body.target_id,
            reason=body.reason,
            actor=principal.actor,
        )
        return HoldRead.model_validate(hold)


@router.get("", response_model=HoldPage)
def list_(
    principal: PrincipalDep,
    session: SessionDep,
    active: Annotated[QueryFlag, Query(description="Only holds not yet released.")] = False,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> HoldPage:
    require_admin(principal)
    with session.begin():
        rows, next_cursor = holds.list_holds(
            session, active_only=active, limit=limit, cursor=cursor
        )
        return HoldPage(items=[HoldRead.model_validate(h) for h in rows], next_cursor=next_cursor)


@router.post("/{hold_id}/release", response_model=HoldRead)
def release(hold_id: IntId, principal: PrincipalDep, session: SessionDep) -> HoldRead:
    """Release a hold; its rows become eligible for retention again."""
    require_admin(principal)
    with session.begin():
        return HoldRead.model_validate(
            holds.release_hold(session, hold_id=hold_id, actor=principal.actor)
        )
