"""Retention archives on S3: the shared contract against a real moto server, plus paging and errors.

The server (``s3_server`` in conftest) runs for the whole session; each test gets its own key
prefix, so tests never see each other's archives.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.retention.archive.archive_cases")

boto3 = pytest.importorskip("boto3")

from taskledger.retention.archive.reader import verify  # noqa: E402
from taskledger.retention.archive.s3 import S3Store  # noqa: E402
from taskledger.retention.archive.stores import ArchiveNotFound, ArchiveStorageError, open_store  # noqa: E402
from taskledger.retention.archive.writer import ArchiveWriter  # noqa: E402
from tests.retention.archive.archive_cases import STARTED, ArchiveContract, sample_runs  # noqa: E402
from tests.retention.conftest import BUCKET, S3Server  # noqa: E402


def split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class S3Backend:
    root_url: str
    s3_endpoint_url: str
    client: Any

    def raw_read(self, archive_uri: str, name: str) -> bytes:
        bucket, key = split(archive_uri)
        data: bytes = self.client.get_object(Bucket=bucket, Key=f"{key}/{name}")["Body"].read()
        return data

    def raw_write(self, archive_uri: str, name: str, data: bytes) -> None:
        bucket, key = split(archive_uri)
        self.client.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=data)

    def raw_delete(self, archive_uri: str, name: str) -> None:
        bucket, key = split(archive_uri)
        self.client.delete_object(Bucket=bucket, Key=f"{key}/{name}")


@pytest.fixture
def prefix() -> str:
    return f"tests/{uuid.uuid4().hex}"


class TestS3Archive(ArchiveContract):
    @pytest.fixture
    def backend(self, s3_server: S3Server, prefix: str) -> S3Backend:
        return S3Backend(f"s3://{BUCKET}/{prefix}", s3_server.endpoint_url, s3_server.client)


def test_s3_layout_and_uri(s3_server: S3Server, prefix: str) -> None:
    store = open_store(f"s3://{BUCKET}/{prefix}", s3_endpoint_url=s3_server.endpoint_url)
    writer = ArchiveWriter(
        store,
        run_id="42",
        started_at=STARTED,
        policy_name="default",
        policy_hash="0" * 64,
        schema_revision="20261128_0001",
    )
    writer.write_part("runs", sample_runs(1, 3), key_column="id", rule="r", action="delete")
    writer.finish()
    store.close()
    assert writer.uri == f"s3://{BUCKET}/{prefix}/2026/11/42"
    listing = s3_server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert sorted(item["Key"] for item in listing["Contents"]) == [
        f"{prefix}/2026/11/42/manifest.json",
        f"{prefix}/2026/11/42/runs-00001.jsonl.gz",
    ]
    assert verify(writer.uri, s3_endpoint_url=s3_server.endpoint_url).ok


def test_s3_list_follows_every_page(s3_server: S3Server, prefix: str) -> None:
    store = S3Store(BUCKET, prefix, client=s3_server.client)
    store.list_page_size = 2  # force several pages out of a handful of objects
    keys = [f"a/{n:02d}" for n in range(7)]
    for key in keys:
        store.put(key, key.encode())
    assert store.list("") == keys
    assert store.list("a/0") == keys
    assert store.get("a/03") == b"a/03"
    assert store.exists("a/06") and not store.exists("a/07")
    with pytest.raises(ArchiveNotFound):
        store.get("a/07")


def test_s3_errors_are_storage_errors(s3_server: S3Server) -> None:
    store = S3Store("no-such-bucket-here", "x", client=s3_server.client)
    with pytest.raises(ArchiveStorageError, match="s3://no-such-bucket-here/x/k"):
        store.put("k", b"data")
    with pytest.raises(ArchiveStorageError):
        store.list("")
