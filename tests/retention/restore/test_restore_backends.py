"""Restore across backends and stores: an archive written from SQLite restores into PostgreSQL
and back, and an archive on S3 (a real moto server) restores like a local one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine

from taskledger.enums import RetentionTrigger
from taskledger.retention.archive.reader import verify
from taskledger.retention.archive.stores import ArchiveTarget
from taskledger.retention.execute.request import RetentionRequest, Safeguards
from taskledger.retention.execute.runner import execute_policy, preview_policy
from taskledger.retention.restore.restore import restore
from taskledger.store import make_engine, make_session_factory
from tests.conftest import PG_ADMIN_URL, _truncate_all
from tests.retention.conftest import BUCKET, S3Server
from tests.retention.engine_helpers import populated, run_policy
from tests.retention.restore_helpers import copy_database, mixed_policy, table_hashes


def _sqlite(template: Path, path: Path) -> Engine:
    shutil.copyfile(template, path)
    return make_engine(f"sqlite:///{path}")


@pytest.mark.skipif(not PG_ADMIN_URL, reason="TASKLEDGER_TEST_DATABASE_URL is not set")
def test_sqlite_archive_into_postgresql_and_back(
    sqlite_template: Path, pg_migrated_url: str, tmp_path: Path
) -> None:
    _truncate_all(pg_migrated_url)
    lite, pg = _sqlite(sqlite_template, tmp_path / "a.db"), make_engine(pg_migrated_url)
    back = _sqlite(sqlite_template, tmp_path / "b.db")
    try:
        populated(lite, runs=800, days=400)
        # jsonb orders the keys of JSON objects its own way: compare values across backends.
        original = table_hashes(lite, key_order=False)
        _, from_sqlite = run_policy(lite, mixed_policy(), tmp_path / "lite-archives")
        assert from_sqlite.archive_uri

        copy_database(lite, pg)  # PostgreSQL now holds what retention left
        report = restore(pg, from_sqlite.archive_uri, actor="test", trigger="cli")
        assert report.inserted > 0 and report.orphaned == 0
        assert table_hashes(pg, key_order=False) == original

        _, from_pg = run_policy(pg, mixed_policy(), tmp_path / "pg-archives")
        assert from_pg.archive_uri
        copy_database(pg, back)
        restore(back, from_pg.archive_uri, actor="test", trigger="cli")
        assert table_hashes(back, key_order=False) == original
    finally:
        for engine in (lite, pg, back):
            engine.dispose()


def test_s3_archive_verify_and_restore(engine: Engine, s3_server: S3Server, tmp_path: Path) -> None:
    populated(engine, runs=600, days=400)
    original = table_hashes(engine)
    sessions = make_session_factory(engine)
    policy = mixed_policy()
    request = RetentionRequest(
        actor="test",
        trigger=RetentionTrigger.CLI,
        reason="test data is old",
        policy=policy,
        archive=ArchiveTarget(f"s3://{BUCKET}/restore/{tmp_path.name}", s3_server.endpoint_url),
        safeguards=Safeguards(force=True),
    )
    previewed = preview_policy(sessions, request)
    report = execute_policy(engine, sessions, request.confirming(previewed))
    uri = report.archive_uri
    assert uri is not None and uri.startswith(f"s3://{BUCKET}/restore/")
    assert verify(uri, s3_endpoint_url=s3_server.endpoint_url).ok
    restored = restore(
        engine, uri, actor="test", trigger="cli", s3_endpoint_url=s3_server.endpoint_url
    )
    assert restored.inserted > 0 and table_hashes(engine) == original
    again = restore(
        engine, uri, actor="test", trigger="cli", s3_endpoint_url=s3_server.endpoint_url
    )
    assert again.inserted == 0 and again.restored == 0
