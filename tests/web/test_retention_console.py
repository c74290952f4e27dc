"""The retention console in Chromium: preview, execute with the typed confirmation and find the
audit row; place and release a hold and see it counted; verify an archive, restore it as a dry
run and then for real. Every state is checked with axe-core, and the pages fit a phone."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import func, select

from taskledger.store.models import Run
from tests.conftest import ADMIN_KEY
from tests.helpers import state_of, transaction
from tests.retention.engine_helpers import old_and_new_runs
from tests.web.conftest import LiveServer, fits_a_phone, serious_violations

PREVIEW_PAGE = re.compile(r"/retention/runs/\d+$")


def runs(live: LiveServer) -> int:
    with transaction(live.app) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def preview(page: Any) -> str:
    """Press Preview on the policy page; returns the preview's page URL."""
    page.goto("/retention")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.wait_for_url(PREVIEW_PAGE)
    return str(page.url)


def rule_cell(page: Any, rule: str, column: str) -> str:
    cell = page.locator(f'#preview-rules tr[data-rule="{rule}"] [data-{column}]')
    return str(cell.inner_text())


def test_preview_then_execute_with_the_typed_confirmation(
    superuser_page: Any, live: LiveServer
) -> None:
    page = superuser_page
    old_and_new_runs(state_of(live.app).engine, 3, 5)
    page.goto("/retention")
    page.locator("#ages-runs svg").wait_for()
    assert "8 rows" in page.locator("#ages-runs").inner_text()
    expiring = page.locator("#expiring tr", has_text="runs-terminal")
    assert expiring.locator("td.num").first.inner_text() == "3"
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    preview_url = preview(page)
    assert rule_cell(page, "runs-terminal", "matched") == "3"
    plan_id = page.locator("#plan-id").inner_text()
    button = page.locator("#execute-button")
    assert button.inner_text() == "Delete 3 runs"
    assert button.is_disabled()
    confirm = page.get_by_label("Type the policy name")
    confirm.fill("defaul")
    assert button.is_disabled()
    assert serious_violations(page) == []
    assert fits_a_phone(page)
    confirm.fill("default")
    assert button.is_enabled()
    button.click()
    page.wait_for_url(lambda url: url != preview_url and PREVIEW_PAGE.search(url) is not None)
    page.locator("#outcome-rules").wait_for()
    assert page.locator("#audit-row .badge").inner_text() == "ok"
    affected = page.locator('#outcome-rules tr[data-rule="runs-terminal"] [data-affected]')
    assert affected.inner_text() == "3"
    assert (
        page.locator("#archive-uri")
        .inner_text()
        .startswith(state_of(live.app).settings.resolved_archive_url)
    )
    assert runs(live) == 5
    assert serious_violations(page) == []
    execution = int(page.url.rsplit("/", 1)[1])

    with httpx.Client(base_url=live.url, headers={"X-Admin-Key": ADMIN_KEY}) as api:
        log = api.get("/api/v1/admin/retention/runs").json()["items"]
    row = next(item for item in log if item["id"] == execution)
    assert (row["mode"], row["outcome"], row["actor"], row["plan_id"]) == (
        "execute",
        "ok",
        "user:root@example.com",
        plan_id,
    )

    page.get_by_role("link", name="Audit log", exact=True).click()
    page.locator(f'#audit-rows tr[data-run="{execution}"]').wait_for()
    assert "3 rows affected" in page.locator(f'tr[data-run="{execution}"]').inner_text()
    page.get_by_label("Mode").select_option("execute")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"mode=execute"))
    assert page.locator("#audit-rows tr[data-run]").count() == 1
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    page.goto(preview_url)  # the plan is spent: the page says so, and offers a new preview
    page.locator("#not-executable").wait_for()
    assert "already executed" in page.locator("#not-executable").inner_text()
    assert page.locator("#execute-button").count() == 0


def test_a_held_run_is_counted_as_held(superuser_page: Any, live: LiveServer) -> None:
    page = superuser_page
    old_and_new_runs(state_of(live.app).engine, 3, 5)
    with transaction(live.app) as session:
        oldest = session.scalar(select(func.min(Run.id)))
    page.goto("/retention/holds")
    page.get_by_text("No holds yet").wait_for()
    assert serious_violations(page) == []
    page.get_by_label("Scope").select_option("run")
    page.get_by_label("Target id").fill(str(oldest))
    page.get_by_label("Reason").fill("legal hold")
    page.get_by_role("button", name="Place hold").click()
    row = page.locator("#holds tbody tr").first
    row.get_by_text("active").wait_for()
    assert "legal hold" in row.inner_text() and str(oldest) in row.inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    preview(page)
    assert rule_cell(page, "runs-terminal", "held") == "1"
    assert rule_cell(page, "runs-terminal", "matched") == "2"

    page.goto("/retention/holds")
    page.get_by_role("button", name="Release hold").click()
    page.locator("#holds tbody tr").first.get_by_text("released").wait_for()
    assert page.get_by_role("button", name="Release hold").count() == 0
    assert serious_violations(page) == []

    preview(page)
    assert rule_cell(page, "runs-terminal", "held") == "0"
    assert rule_cell(page, "runs-terminal", "matched") == "3"


def test_verify_then_restore_an_archive(superuser_page: Any, live: LiveServer) -> None:
    page = superuser_page
    old_and_new_runs(state_of(live.app).engine, 3, 5)
    page.goto("/retention/archives")
    page.get_by_text("No archives yet").wait_for()
    preview(page)
    page.get_by_label("Type the policy name").fill("default")
    page.locator("#execute-button").click()
    page.locator("#outcome-rules").wait_for()
    assert runs(live) == 5

    page.get_by_role("link", name="Archives", exact=True).click()
    archive = page.locator("#archives tbody tr").first
    archive.wait_for()
    run_id = archive.get_attribute("data-archive")
    assert run_id and "runs" in archive.inner_text()
    assert serious_violations(page) == []
    assert fits_a_phone(page)

    archive.get_by_role("button", name="Verify").click()
    page.locator("#verify-verdict").wait_for()
    assert page.locator("#verify-verdict").inner_text().startswith("Sound")
    assert serious_violations(page) == []

    page.get_by_role("button", name="Restore dry run").click()
    page.locator("#restore-tables").wait_for()
    assert page.locator('#restore-tables tr[data-table="runs"] [data-inserted]').inner_text() == "3"
    assert page.locator("#audit-row .badge").inner_text() == "dry-run"
    assert runs(live) == 5  # a dry run changes nothing
    restore = page.locator("#restore-button")
    assert restore.is_disabled()
    assert serious_violations(page) == []
    page.get_by_label("Type the archive's run id").fill(run_id)
    assert restore.is_enabled()
    dry_run_url = page.url
    restore.click()
    page.wait_for_url(lambda url: url != dry_run_url)
    page.locator("#restore-tables").wait_for()
    assert page.locator("#audit-row .badge").inner_text() == "ok"
    assert page.locator('#restore-tables tr[data-table="runs"] [data-inserted]').inner_text() == "3"
    assert runs(live) == 8
    assert serious_violations(page) == []
    assert fits_a_phone(page)
