"""The retention console's audit log: every preview, execution and restore, newest first
(keyset paged, filtered by mode and outcome), and the page of each row.

A preview's page executes its plan while it can (single-use, within the plan TTL, for the
policy in force); a restore dry run's page restores the archive for real.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response

from taskledger.enums import RetentionMode, RetentionOutcome
from taskledger.errors import BadRequestError, ConflictError, SafeguardRefused
from taskledger.retention.audit import get_audit, list_audit
from taskledger.retention.plan.plans import find_preview
from taskledger.retention.policy.load import load_policy
from taskledger.retention.policy.rules import Policy, PolicyError
from taskledger.state import AppState
from taskledger.store.models import RetentionRun
from taskledger.web.deps import SessionDep, StateDep
from taskledger.web.pages import is_htmx, page_router, pages_of
from taskledger.web.views.retention import (
    PAGE_SIZE,
    SuperuserDep,
    execute_label,
    more_url,
    parse_int_id,
)

router = page_router()

_TIMES = ("cutoff", "oldest", "newest", "now", "started_at", "finished_at")


def _choice(value: str, allowed: type[RetentionMode] | type[RetentionOutcome], what: str) -> str:
    if value and value not in {member.value for member in allowed}:
        names = ", ".join(member.value for member in allowed)
        raise BadRequestError(f"Unknown {what} {value!r} (one of: {names}).")
    return value


def _dated(item: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's figures with its ISO timestamps as datetimes, for the page to format."""
    out = dict(item)
    for key in _TIMES:
        if isinstance(out.get(key), str):
            with contextlib.suppress(ValueError):
                out[key] = datetime.fromisoformat(out[key])
    return out


def _rules(row: RetentionRun) -> list[dict[str, Any]]:
    counts = row.counts if isinstance(row.counts, Mapping) else {}
    rules = counts.get("rules")
    return [_dated(r) for r in rules if isinstance(r, Mapping)] if isinstance(rules, list) else []


def summary(row: RetentionRun) -> str:
    """One line on what a row of the audit log did."""
    counts = row.counts if isinstance(row.counts, Mapping) else {}
    rules = _rules(row)
    if row.mode == RetentionMode.RESTORE.value and isinstance(counts.get("summary"), str):
        text = str(counts["summary"])
    elif row.mode == RetentionMode.PREVIEW.value and rules:
        text = f"{sum(int(r.get('matched') or 0) for r in rules):,} rows matched"
    elif rules:
        text = f"{sum(int(r.get('affected') or 0) for r in rules):,} rows affected"
    else:
        text = ""
    if row.error:
        text = f"{text}; {row.error}" if text else row.error
    return text if len(text) <= 200 else text[:199] + "…"


@router.get("/retention/runs")
def audit_log(
    request: Request,
    principal: SuperuserDep,
    session: SessionDep,
    mode: Annotated[str, Query(max_length=32)] = "",
    outcome: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
) -> Response:
    """The audit log, newest first; htmx's "Load more" gets the next rows only."""
    mode = _choice(mode, RetentionMode, "mode")
    outcome = _choice(outcome, RetentionOutcome, "outcome")
    with session.begin():
        rows, next_cursor = list_audit(
            session, limit=limit, cursor=cursor, mode=mode or None, outcome=outcome or None
        )
        items = [{"row": row, "summary": summary(row)} for row in rows]
    context = {
        "page": "retention",
        "section": "runs",
        "items": items,
        "next_cursor": next_cursor,
        "mode": mode,
        "outcome": outcome,
        "limit": limit,
        "modes": [m.value for m in RetentionMode],
        "outcomes": [o.value for o in RetentionOutcome],
        "filtered": bool(mode or outcome),
        "more_url": more_url(
            "/retention/runs", mode=mode, outcome=outcome, limit=limit, cursor=next_cursor
        ),
    }
    name = "_retention_runs_rows.html" if is_htmx(request) and cursor else "retention_runs.html"
    return pages_of(request).render(request, name, context)


def _executable(state: AppState, row: RetentionRun) -> tuple[Policy | None, str | None]:
    """The policy in force when this preview's plan can still be executed, else why not."""
    if row.mode != RetentionMode.PREVIEW.value or row.outcome != RetentionOutcome.OK.value:
        return None, None
    if not row.plan_id:
        return None, "This preview has no plan."
    try:
        policy = load_policy(state.settings.retention.policy)
        find_preview(
            state.session_factory, row.plan_id, policy, ttl=state.settings.retention.plan_ttl
        )
    except (PolicyError, ConflictError, SafeguardRefused) as exc:
        return None, str(exc.detail)
    return policy, None


@router.get("/retention/runs/{run_id}")
def audit_row(
    request: Request, run_id: str, principal: SuperuserDep, session: SessionDep, state: StateDep
) -> Response:
    """One row of the audit log: a preview (and its execute form), an execution's outcome per
    rule and archive, or a restore's report."""
    number = parse_int_id(run_id, "retention run")
    with session.begin():
        row = get_audit(session, number)
        rules = _rules(row)
        counts = row.counts if isinstance(row.counts, Mapping) else {}
        session.expunge(row)
    policy, not_executable = _executable(state, row)
    tables = counts.get("tables") if row.mode == RetentionMode.RESTORE.value else None
    context = {
        "page": "retention",
        "section": "runs",
        "row": row,
        "rules": rules,
        "counts": counts,
        "summary": summary(row),
        "restore_tables": tables if isinstance(tables, Mapping) else {},
        "policy": policy,
        "not_executable": not_executable,
        "execute_label": execute_label(rules) if policy else "",
        "total": sum(int(r.get("matched") or 0) for r in rules),
        "expires_at": row.started_at + timedelta(seconds=state.settings.retention.plan_ttl),
        "plan_ttl": state.settings.retention.plan_ttl,
    }
    return pages_of(request).render(request, "retention_run.html", context)
