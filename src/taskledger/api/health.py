"""Liveness, readiness and metrics endpoints for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from taskledger.api.deps import StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.store.migrate import current_revision

router = APIRouter(tags=["operations"], route_class=LedgerRoute)
log = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness: the process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is current",
    responses={503: {"description": "Database unreachable or not migrated to head"}},
)
def readyz(state: StateDep) -> JSONResponse:
    try:
        revision = current_revision(state.engine)
    except SQLAlchemyError as exc:
        log.warning("readiness check failed: %s", exc)
        return JSONResponse({"status": "unavailable", "detail": "database unreachable"}, 503)
    if revision != state.head_revision:
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": "database schema is not at head; run `taskledger db upgrade`",
                "revision": revision,
                "head": state.head_revision,
            },
            503,
        )
    return JSONResponse({"status": "ok", "revision": revision})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
