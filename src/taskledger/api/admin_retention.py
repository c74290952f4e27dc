"""``/api/v1/admin/retention``: preview a policy, execute a confirmed plan, read the audit log.

Superusers and the admin key only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, SessionDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.enums import RetentionMode, RetentionTrigger
from taskledger.retention.audit import list_audit
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.policy.load import load_policy, parse_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy, PolicyError
from taskledger.schemas.base import ErrorMessage
from taskledger.schemas.retention import (
    ExecuteRequest,
    ExecutionOut,
    PolicySource,
    PreviewOut,
    RetentionRunPage,
    RetentionRunRead,
)
from taskledger.services.access import require_admin
from taskledger.services.pagination import DEFAULT_LIMIT
from taskledger.settings import Settings

router = APIRouter(prefix="/api/v1/admin/retention", tags=["admin"], route_class=LedgerRoute)


def policy_from(source: PolicySource, settings: Settings) -> Policy:
    """The policy a request names: inline TOML, a preset, or the one in force."""
    if source.policy is not None:
        return parse_policy(source.policy, default_name="inline")
    if source.preset is not None:
        if source.preset not in PRESETS:
            raise PolicyError(f"unknown preset {source.preset!r} (one of: {', '.join(PRESETS)})")
        return PRESETS[source.preset]
    return load_policy(settings.retention.policy)


@router.post("/preview", response_model=PreviewOut)
def preview(body: PolicySource, principal: PrincipalDep, state: StateDep) -> PreviewOut:
    """What the policy would do, rule by rule; changes nothing. Returns the `plan_id` that
    `execute` needs."""
    require_admin(principal)
    request = RetentionRequest(
        actor=principal.actor,
        trigger=RetentionTrigger.API,
        policy=policy_from(body, state.settings),
        archive=state.archive_target,
    )
    result = preview_policy(state.session_factory, request)
    return PreviewOut.model_validate(result.to_dict())


@router.post(
    "/execute",
    response_model=ExecutionOut,
    responses={
        409: {
            "model": ErrorMessage,
            "description": (
                "Refused, and audited: no preview has this plan_id, or it was previewed with "
                "another policy; the plan was already executed (single-use) or is older than "
                "TASKLEDGER_RETENTION_PLAN_TTL; the plan is stale; a cap refused it; or another "
                "retention run holds the lock."
            ),
        },
    },
)
def execute(body: ExecuteRequest, principal: PrincipalDep, state: StateDep) -> ExecutionOut:
    """Execute the previewed plan `confirm` names: archive, then delete, scrub or expire.

    A plan runs once, within `TASKLEDGER_RETENTION_PLAN_TTL` of its preview."""
    require_admin(principal)
    request = RetentionRequest(
        actor=principal.actor,
        trigger=RetentionTrigger.API,
        reason=body.reason,
        policy=policy_from(body, state.settings),
        archive=state.archive_target,
        safeguards=Safeguards.from_settings(state.settings, plan=body.confirm, force=body.force),
        metrics=state.metrics,
    )
    report = execute_policy(state.engine, state.session_factory, request)
    return ExecutionOut.model_validate(report.to_dict())


@router.get("/runs", response_model=RetentionRunPage)
def runs(
    principal: PrincipalDep,
    session: SessionDep,
    mode: Annotated[RetentionMode | None, Query()] = None,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> RetentionRunPage:
    """The audit log: every preview, execution and restore, newest first."""
    require_admin(principal)
    with session.begin():
        rows, next_cursor = list_audit(
            session, limit=limit, cursor=cursor, mode=mode.value if mode else None
        )
        return RetentionRunPage(
            items=[RetentionRunRead.model_validate(r) for r in rows], next_cursor=next_cursor
        )
