"""The admin archive API: list archives, restore one; only archives under the archive root."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from taskledger.retention.archive.stores import InvalidArchiveURI, confine
from tests.conftest import ADMIN_KEY
from tests.helpers import problem, state_of
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import mixed_policy, table_hashes

ADMIN = {"X-Admin-Key": ADMIN_KEY}


def _archive(app: FastAPI) -> tuple[dict[str, object], str]:
    state = state_of(app)
    populated(state.engine, runs=300, days=400)
    before = table_hashes(state.engine)
    _, report = run_policy(state.engine, mixed_policy(), Path(state.settings.resolved_archive_url))
    assert report.archive_uri
    return before, report.archive_uri


def test_list_then_restore(app: FastAPI, client: TestClient) -> None:
    before, uri = _archive(app)
    engine = state_of(app).engine
    listed = client.get("/api/v1/admin/archives", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["uri"] == uri and item["rows"] > 0 and "runs" in item["tables"]
    assert listed.json()["next_cursor"] is None

    after_retention = table_hashes(engine)
    dry = client.post("/api/v1/admin/restore", json={"uri": uri, "dry_run": True}, headers=ADMIN)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and table_hashes(engine) == after_retention

    # Relative to the archive root works too.
    relative = str(Path(uri).relative_to(state_of(app).settings.resolved_archive_url))
    done = client.post("/api/v1/admin/restore", json={"uri": relative}, headers=ADMIN)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["inserted"] > 0 and body["outcome"] == "ok"
    assert table_hashes(engine) == before

    again = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
    assert again.json()["inserted"] == 0
    audit = client.get("/api/v1/admin/retention/runs?mode=restore", headers=ADMIN).json()
    assert [r["trigger"] for r in audit["items"]] == ["api"] * 3


def test_paging(app: FastAPI, client: TestClient) -> None:
    state = state_of(app)
    for seed in range(3):
        populated(state.engine, runs=100, days=400, seed=seed + 10)
        run_policy(state.engine, mixed_policy(), Path(state.settings.resolved_archive_url))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/admin/archives", params=params, headers=ADMIN).json()
        seen.extend(i["uri"] for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3
    bad = client.get("/api/v1/admin/archives", params={"cursor": "!!"}, headers=ADMIN)
    assert bad.status_code == 400


def test_bad_requests_are_4xx(app: FastAPI, client: TestClient, tmp_path: Path) -> None:
    _, uri = _archive(app)
    engine = state_of(app).engine
    after_retention = table_hashes(engine)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cases = {
        "/etc": 422,
        str(outside): 422,
        f"{uri}/../../../../..": 422,
        "s3://some-bucket/archives/2026/11/x": 422,
        "ftp://host/x": 422,
        str(Path(uri).parent / "no-such-run"): 404,
    }
    for target, status in cases.items():
        response = client.post("/api/v1/admin/restore", json={"uri": target}, headers=ADMIN)
        assert response.status_code == status, (target, response.text)

    # Outside the root, what a path is (or whether it exists) never changes the answer.
    root = state_of(app).settings.resolved_archive_url
    (outside / "a-file").write_text("x")
    (Path(root) / "escape").symlink_to(outside)
    for target in (
        "/etc/passwd",
        str(outside / "a-file"),
        str(outside / "missing" / "deeper"),
        "/no/such/place",
        "escape",
        "escape/a-file",
        f"file://{outside}",
    ):
        response = client.post("/api/v1/admin/restore", json={"uri": target}, headers=ADMIN)
        assert response.status_code == 422, (target, response.text)
        assert response.json()["detail"] == [
            {
                "loc": ["body"],
                "msg": f"{target!r} is not inside the archive root {root}",
                "type": "value_error",
            }
        ], target
    unknown = client.post(
        "/api/v1/admin/restore", json={"uri": uri, "table": "users"}, headers=ADMIN
    )
    assert unknown.status_code == 422 and "runs" in problem(unknown)
    extra = client.post("/api/v1/admin/restore", json={"uri": uri, "x": 1}, headers=ADMIN)
    assert extra.status_code == 422

    part = next(Path(uri).glob("runs-*.jsonl.gz"))
    part.write_bytes(part.read_bytes()[:-20])
    damaged = client.post("/api/v1/admin/restore", json={"uri": uri}, headers=ADMIN)
    assert damaged.status_code == 422 and part.name in problem(damaged)
    assert table_hashes(engine) == after_retention


def test_an_unlisted_part_is_refused_naming_it(app: FastAPI, client: TestClient) -> None:
    """An archive holding a part its manifest does not list is not what it says: 422 naming
    the file, and nothing is written."""
    _, uri = _archive(app)
    engine = state_of(app).engine
    listed = sorted(Path(uri).glob("runs-*.jsonl.gz"))[-1]
    table, number = listed.name.removesuffix(".jsonl.gz").rsplit("-", 1)
    stray = listed.with_name(f"{table}-{int(number) + 1:05d}.jsonl.gz")
    stray.write_bytes(listed.read_bytes())
    after_retention = table_hashes(engine)
    for dry_run in (True, False):
        response = client.post(
            "/api/v1/admin/restore", json={"uri": uri, "dry_run": dry_run}, headers=ADMIN
        )
        assert response.status_code == 422, response.text
        detail = problem(response)
        assert str(stray) in detail and "not listed in the manifest" in detail
    assert table_hashes(engine) == after_retention


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/archives/2026/11/run",
        "s3://bucket/archive-other/2026/11/run",
        "s3://bucket/archives/../secrets/run",
        "/tmp/archives/2026",
        "",
    ],
)
def test_s3_root_confinement(uri: str) -> None:
    with pytest.raises(InvalidArchiveURI):
        confine(uri, "s3://bucket/archives")


def test_s3_root_accepts_its_own_archives() -> None:
    run = f"2026/11/{uuid.uuid4().hex}"
    assert confine(f"s3://bucket/archives/{run}", "s3://bucket/archives") == (
        f"s3://bucket/archives/{run}"
    )
    assert confine(run, "s3://bucket/archives") == f"s3://bucket/archives/{run}"
