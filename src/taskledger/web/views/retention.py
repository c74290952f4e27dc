"""The retention console (superusers only): the policy in force with its age histograms and
"expiring soon" timeline, preview, and executing a previewed plan with a typed confirmation.

The audit log is :mod:`.retention_audit`, holds :mod:`.retention_holds` and archives
:mod:`.retention_archives`. Every step calls what ``/api/v1/admin/retention`` calls, as the
logged-in superuser (audited as ``user:<email>``, trigger ``api``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from taskledger.enums import RetentionTrigger
from taskledger.errors import BadRequestError, ConflictError, NotFoundError, SafeguardRefused
from taskledger.retention import ages
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.policy.load import load_policy
from taskledger.retention.policy.presets import PRESETS
from taskledger.retention.policy.rules import Policy, PolicyError, format_duration
from taskledger.schemas.limits import MAX_INT64
from taskledger.services.access import Principal, require_superuser
from taskledger.state import AppState
from taskledger.store.types import utcnow
from taskledger.web.charts import Bucket, legend, stacked_bars
from taskledger.web.deps import PrincipalDep, SessionDep, StateDep
from taskledger.web.pages import page_router, pages_of

router = page_router()

__all__ = [
    "PAGE_SIZE",
    "SuperuserDep",
    "execute_label",
    "more_url",
    "parse_int_id",
    "router",
]


def superuser(principal: PrincipalDep) -> Principal:
    """The logged-in superuser; anyone else gets the 403 page."""
    require_superuser(principal)
    return principal


SuperuserDep = Annotated[Principal, Depends(superuser)]

#: How the execute button names each table's rows.
NOUNS = {
    "runs": ("run", "runs"),
    "tasks": ("task", "tasks"),
    "agent_sessions": ("session", "sessions"),
    "agent_connections": ("connection", "connections"),
    "instructions": ("instruction", "instructions"),
    "acknowledgements": ("acknowledgement", "acknowledgements"),
}


def execute_label(rules: Iterable[Mapping[str, Any]]) -> str:
    """What the execute button says: ``Delete 1,234 runs, 56 sessions; scrub 7 instructions``."""
    by_action: dict[str, dict[str, int]] = {}
    for rule in rules:
        if rule.get("matched"):
            tables = by_action.setdefault(str(rule["action"]), {})
            tables[str(rule["table"])] = tables.get(str(rule["table"]), 0) + int(rule["matched"])
    phrases = []
    for action, tables in by_action.items():
        parts = []
        for table, count in tables.items():
            one, many = NOUNS.get(table, (table, table))
            parts.append(f"{count:,} {one if count == 1 else many}")
        phrases.append(f"{action} {', '.join(parts)}")
    text = "; ".join(phrases)
    return text[:1].upper() + text[1:]


def _policy_in_force(state: AppState) -> tuple[Policy | None, str | None]:
    try:
        return load_policy(state.settings.retention.policy), None
    except PolicyError as exc:
        return None, str(exc.detail)


def _request(
    principal: Principal, state: AppState, policy: Policy, **safeguards: Any
) -> RetentionRequest:
    return RetentionRequest(
        actor=principal.actor,
        trigger=RetentionTrigger.API,
        reason=safeguards.pop("reason", None),
        policy=policy,
        archive=state.archive_target,
        safeguards=Safeguards.from_settings(state.settings, **safeguards),
        metrics=state.metrics,
    )


def _histogram_chart(histogram: ages.AgeHistogram) -> dict[str, Any]:
    buckets = [Bucket(label, counts) for label, counts in histogram.buckets.items()]
    title = f"{histogram.table} by age of {histogram.age_column}"
    return {
        "table": histogram.table,
        "age_column": histogram.age_column,
        "total": histogram.total,
        "chart": stacked_bars(buckets, series=histogram.statuses, title=title, unit="rows"),
        "legend": legend(histogram.statuses),
        "buckets": histogram.buckets,
        "statuses": histogram.statuses,
    }


TIMELINE_SERIES = ("now", "7d", "30d")


def _timeline_chart(expiries: list[ages.RuleExpiry]) -> Any:
    buckets = [
        Bucket(
            e.name,
            {"now": e.eligible_now, "7d": e.soon[7], "30d": e.soon[30] - e.soon[7]},
        )
        for e in expiries
    ]
    title = "Rows each rule may take now, in 7 days and in 30 days"
    return stacked_bars(buckets, series=TIMELINE_SERIES, title=title, unit="rows")


@router.get("/retention")
def overview(
    request: Request, principal: SuperuserDep, state: StateDep, session: SessionDep
) -> Response:
    """The policy in force, the preview button, the age histograms and the expiring timeline."""
    policy, policy_error = _policy_in_force(state)
    now = utcnow()
    with session.begin():
        histograms = [_histogram_chart(h) for h in ages.age_histograms(session, now=now)]
        expiries = ages.expiring(session, policy, now=now) if policy is not None else []
    source = state.settings.retention.policy
    context = {
        "page": "retention",
        "section": "policy",
        "policy": policy,
        "policy_error": policy_error,
        "source": source,
        "preset": source in PRESETS,
        "rules": [
            {"rule": rule, "older_than": format_duration(rule.older_than)}
            for rule in (policy.rules if policy else ())
        ],
        "settings": state.settings.retention,
        "histograms": histograms,
        "expiries": expiries,
        "timeline": _timeline_chart(expiries) if expiries else None,
        "timeline_legend": legend(TIMELINE_SERIES),
        "now": now,
    }
    return pages_of(request).render(request, "retention.html", context)


@router.post("/retention/preview")
def preview(principal: SuperuserDep, state: StateDep) -> Response:
    """Preview the policy in force (audited); the preview's page shows it and executes it."""
    policy = load_policy(state.settings.retention.policy)
    previewed = preview_policy(state.session_factory, _request(principal, state, policy))
    return RedirectResponse(f"/retention/runs/{previewed.retention_run_id}", status_code=303)


@router.post("/retention/execute")
def execute(
    request: Request,
    principal: SuperuserDep,
    state: StateDep,
    plan_id: Annotated[str, Form(min_length=1, max_length=64)],
    confirm: Annotated[str, Form(max_length=255)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Execute the previewed plan ``plan_id`` once its policy's name is typed as confirmation.

    A wrong confirmation is 400 and runs nothing; a spent, expired, stale or refused plan shows
    why (409). Otherwise the execution's audit row shows what it did."""
    policy = load_policy(state.settings.retention.policy)
    if confirm.strip() != policy.name:
        raise BadRequestError(
            f"Type the policy name “{policy.name}” exactly to confirm; nothing was executed."
        )
    retention = _request(
        principal, state, policy, plan=plan_id, force=force, reason=reason.strip() or None
    )
    try:
        report = execute_policy(state.engine, state.session_factory, retention)
    except (ConflictError, SafeguardRefused) as exc:
        context = {"page": "retention", "section": "policy", "message": str(exc.detail)}
        return pages_of(request).render(request, "retention_refused.html", context, status_code=409)
    return RedirectResponse(f"/retention/runs/{report.retention_run_id}", status_code=303)


#: Rows per page of the audit log and of the holds.
PAGE_SIZE = 50


def more_url(path: str, *, limit: int, cursor: str | None, **filters: object) -> str:
    """The next page of a listing, with its filters (empty ones and the default size left out)."""
    query = {k: v for k, v in filters.items() if v}
    if limit != PAGE_SIZE:
        query["limit"] = limit
    query["cursor"] = cursor or ""
    return f"{path}?{urlencode(query)}"


def parse_int_id(text: str, what: str) -> int:
    """An integer id from a path, or the 404 page (never a 422 or a database overflow)."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_INT64:
        raise NotFoundError(f"No {what} {text!r}.")
    return int(text)
