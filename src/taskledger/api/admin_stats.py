"""``GET /api/v1/admin/stats``: storage per retained table, for superusers and the admin key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from taskledger.api.deps import PrincipalDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.retention.policy.load import load_policy
from taskledger.retention.stats import collect_stats
from taskledger.schemas.limits import QueryFlag
from taskledger.services.access import require_admin

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=LedgerRoute)


@router.get("/stats")
def stats(
    principal: PrincipalDep,
    state: StateDep,
    exact: Annotated[
        QueryFlag, Query(description="Count rows (and SQLite sizes) exactly.")
    ] = False,
) -> dict[str, Any]:
    """Per table: rows, bytes, oldest and newest, an age histogram, rows eligible under the
    policy in force, and held rows; plus the audit log's size."""
    require_admin(principal)
    policy = load_policy(state.settings.retention.policy)
    return collect_stats(state.engine, policy, exact=exact).to_dict()
