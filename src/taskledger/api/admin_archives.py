"""``/api/v1/admin/archives`` and ``/api/v1/admin/restore``: list archives, restore one.

Superusers and the admin key only. Only archives under the configured archive root can be
restored here: any other path, bucket or prefix is refused (422), so the API never reads
arbitrary files.
"""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import APIRouter

from taskledger.api.deps import CursorQuery, LimitQuery, PrincipalDep, StateDep
from taskledger.api.routing import LedgerRoute
from taskledger.enums import RetentionTrigger
from taskledger.errors import BadRequestError
from taskledger.retention.archive.reader import ArchiveSummary, list_archives
from taskledger.retention.archive.stores import confine
from taskledger.retention.restore.judge import check_tables
from taskledger.retention.restore.restore import restore
from taskledger.schemas.retention import ArchivePage, ArchiveRead, RestoreOut, RestoreRequest
from taskledger.services.access import require_admin
from taskledger.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], route_class=LedgerRoute)


def _cursor(uri: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": uri}).encode()).rstrip(b"=").decode()


def _after(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))["after"]
        if not isinstance(after, str):
            raise ValueError("not a string")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error) as exc:
        raise BadRequestError("Malformed cursor.") from exc
    return after


def _page(
    found: list[ArchiveSummary], limit: int, cursor: str | None
) -> tuple[list[ArchiveSummary], str | None]:
    start = 0
    if cursor is not None:
        after = _after(cursor)
        uris = [s.uri for s in found]
        if after not in uris:
            raise BadRequestError("The archive this cursor points after is gone; start again.")
        start = uris.index(after) + 1
    page = found[start : start + limit]
    more = start + limit < len(found)
    return page, _cursor(page[-1].uri) if more and page else None


@router.get("/archives", response_model=ArchivePage)
def archives(
    principal: PrincipalDep,
    state: StateDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> ArchivePage:
    """Archives under the archive root, newest first: run id, creation, tables, rows, bytes."""
    require_admin(principal)
    found = list_archives(
        state.settings.resolved_archive_url, s3_endpoint_url=state.settings.archive.s3_endpoint_url
    )
    page, next_cursor = _page(found, limit, cursor)
    items = [
        ArchiveRead(
            uri=s.uri,
            run_id=s.run_id,
            created_at=s.created_at,
            complete=s.complete,
            tables=list(s.tables),
            files=s.files,
            rows=s.rows,
            bytes=s.bytes,
            error=s.error,
        )
        for s in page
    ]
    return ArchivePage(items=items, next_cursor=next_cursor)


@router.post("/restore", response_model=RestoreOut)
def restore_archive(body: RestoreRequest, principal: PrincipalDep, state: StateDep) -> RestoreOut:
    """Verify an archive under the archive root, then put its rows back (or, with `dry_run`,
    count what would be done). A damaged archive is 422 and changes nothing."""
    require_admin(principal)
    tables = check_tables([body.table]) if body.table is not None else None
    uri = confine(body.uri, state.settings.resolved_archive_url)
    report = restore(
        state.engine,
        uri,
        tables=tables,
        dry_run=body.dry_run,
        s3_endpoint_url=state.settings.archive.s3_endpoint_url,
        actor=principal.actor,
        trigger=RetentionTrigger.API,
    )
    return RestoreOut.model_validate(report.to_dict())
