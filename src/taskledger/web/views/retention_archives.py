"""The retention console's archives: list those under the archive root, verify one, restore one
as a dry run and then for real (typing the archive's run id to confirm).

As in ``/api/v1/admin/restore``, only archives under the configured archive root are read: any
other location is refused (422) by :func:`taskledger.retention.archive.stores.confine`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from taskledger.enums import RetentionTrigger
from taskledger.errors import BadRequestError
from taskledger.retention.archive.reader import list_archives, read_manifest, verify
from taskledger.retention.archive.stores import confine
from taskledger.retention.restore.restore import restore
from taskledger.web.deps import StateDep
from taskledger.web.pages import page_router, pages_of
from taskledger.web.views.retention import SuperuserDep

router = page_router()

#: How many archives the page lists (newest first).
SHOWN = 200

UriForm = Annotated[str, Form(min_length=1, max_length=2048)]


@router.get("/retention/archives")
def archive_list(request: Request, principal: SuperuserDep, state: StateDep) -> Response:
    """Every archive under the archive root, newest first, with verify and restore actions."""
    root = state.settings.resolved_archive_url
    found = list_archives(root, s3_endpoint_url=state.settings.archive.s3_endpoint_url)
    context = {
        "page": "retention",
        "section": "archives",
        "archives": found[:SHOWN],
        "more": max(len(found) - SHOWN, 0),
        "root": root,
    }
    return pages_of(request).render(request, "retention_archives.html", context)


@router.post("/retention/archives/verify")
def verify_archive(
    request: Request, principal: SuperuserDep, state: StateDep, uri: UriForm
) -> Response:
    """Check every file of one archive (presence, size, sha256, row count); changes nothing."""
    confined = confine(uri, state.settings.resolved_archive_url)
    report = verify(confined, s3_endpoint_url=state.settings.archive.s3_endpoint_url)
    context = {"page": "retention", "section": "archives", "report": report, "uri": confined}
    return pages_of(request).render(request, "retention_verify.html", context)


@router.post("/retention/archives/restore")
def restore_archive(
    principal: SuperuserDep,
    state: StateDep,
    uri: UriForm,
    dry_run: Annotated[bool, Form()] = False,
    confirm: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """Restore one archive (audited): a dry run counts what would be done; a restore needs the
    archive's run id typed as confirmation (400 otherwise, nothing restored). Either way the
    restore's audit row shows the report."""
    root = state.settings.resolved_archive_url
    endpoint = state.settings.archive.s3_endpoint_url
    confined = confine(uri, root)
    if not dry_run:
        run_id = read_manifest(confined, s3_endpoint_url=endpoint).run_id
        if confirm.strip() != run_id:
            raise BadRequestError(
                f"Type the archive's run id “{run_id}” exactly to confirm; nothing was restored."
            )
    report = restore(
        state.engine,
        confined,
        dry_run=dry_run,
        s3_endpoint_url=endpoint,
        actor=principal.actor,
        trigger=RetentionTrigger.API,
    )
    return RedirectResponse(f"/retention/runs/{report.retention_run_id}", status_code=303)
