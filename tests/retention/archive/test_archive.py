"""Retention archives in a local directory: the shared contract, plus URLs and durable writes."""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.retention.archive.archive_cases")

from taskledger.api.errors import HTTP_STATUS  # noqa: E402
from taskledger.errors import ConfigurationError  # noqa: E402
from taskledger.retention.archive.format import (  # noqa: E402
    MEMBER_BYTES,
    MemberCompressor,
    compress_lines,
    decode_value,
    encode_row,
    rows_of,
)
from taskledger.retention.archive.reader import iter_rows  # noqa: E402
from taskledger.retention.archive.s3 import S3Store  # noqa: E402
from taskledger.retention.archive.stores import (  # noqa: E402
    ArchiveCorrupt,
    ArchiveError,
    ArchiveNotFound,
    InvalidArchiveURI,
    LocalStore,
    open_store,
)
from taskledger.retention.archive.writer import ArchiveWriter  # noqa: E402
from tests.retention.archive.archive_cases import STARTED, ArchiveContract, sample_runs  # noqa: E402


@dataclass
class LocalBackend:
    root_url: str
    s3_endpoint_url: str | None = None

    def raw_read(self, archive_uri: str, name: str) -> bytes:
        return (Path(archive_uri) / name).read_bytes()

    def raw_write(self, archive_uri: str, name: str, data: bytes) -> None:
        (Path(archive_uri) / name).write_bytes(data)

    def raw_delete(self, archive_uri: str, name: str) -> None:
        (Path(archive_uri) / name).unlink()


class TestLocalArchive(ArchiveContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalBackend:
        return LocalBackend(str(tmp_path / "archives"))


def test_local_layout_on_disk(tmp_path: Path) -> None:
    writer = ArchiveWriter(
        LocalStore(tmp_path),
        run_id="42",
        started_at=STARTED,
        policy_name=None,
        policy_hash=None,
        schema_revision=None,
    )
    writer.write_part("runs", sample_runs(1, 2), key_column="id", rule="r", action="delete")
    run_dir = tmp_path / "2026" / "11" / "42"
    assert writer.uri == str(run_dir)
    # Only finished files, no temporary leftovers from the atomic writes.
    assert sorted(p.name for p in run_dir.iterdir()) == ["manifest.json", "runs-00001.jsonl.gz"]
    assert LocalStore(tmp_path).list("") == [
        "2026/11/42/manifest.json",
        "2026/11/42/runs-00001.jsonl.gz",
    ]


def test_local_store_replaces_atomically_and_lists_by_prefix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "deep" / "root")
    store.put("a/b/one", b"1")
    store.put("a/b/one", b"one")
    store.put("a/bc/two", b"2")
    (tmp_path / "deep" / "root" / "a" / "b" / ".one.x.tmp").write_bytes(b"in flight")
    assert store.get("a/b/one") == b"one"
    assert store.list("a/b/") == ["a/b/one"]
    assert store.list("a/b") == ["a/b/one", "a/bc/two"]
    assert store.list("zzz/") == []
    assert store.exists("a/bc/two") and not store.exists("a/bc/three")
    with pytest.raises(ArchiveNotFound):
        store.get("a/missing")
    with pytest.raises(ArchiveCorrupt, match="unsafe"):
        store.get("../outside")


def test_local_store_refuses_a_file_as_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArchiveURI, match="not a directory"):
        open_store(str(tmp_path / "file"))


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("archives")
    assert isinstance(relative, LocalStore) and relative.root == tmp_path / "archives"
    file_url = open_store(f"file://{tmp_path}/with%20space")
    assert isinstance(file_url, LocalStore) and file_url.uri() == f"{tmp_path}/with space"
    assert open_store(str(tmp_path)).uri("2026/11/1") == f"{tmp_path}/2026/11/1"
    # Nothing is created by opening.
    assert not (tmp_path / "archives").exists()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "  ",
        "http://example.com/x",
        "s3://",
        "s3://bucket/a/../b",
        "s3://bucket/x?y=1",
        "file://otherhost/x",
        "ftp://host/archive",
    ],
)
def test_open_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(InvalidArchiveURI) as caught:
        open_store(url)
    assert HTTP_STATUS[caught.value.kind] == 422


def test_s3_urls_open_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store("s3://my-bucket/some/prefix/", s3_endpoint_url="http://127.0.0.1:9")
    try:
        assert isinstance(store, S3Store)
        assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
        assert store.uri("2026/11/7") == "s3://my-bucket/some/prefix/2026/11/7"
        assert store.uri() == "s3://my-bucket/some/prefix"
    finally:
        store.close()


def test_s3_without_boto3_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what "not installed" looks like to import
    with pytest.raises(ConfigurationError, match=r"taskledger\[s3\]"):
        open_store("s3://my-bucket/prefix")


def test_writer_refuses_unsafe_names(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for run_id in ["../x", "a/b", "", "."]:
        with pytest.raises(ArchiveError, match="run id"):
            ArchiveWriter(
                store,
                run_id=run_id,
                started_at=STARTED,
                policy_name=None,
                policy_hash=None,
                schema_revision=None,
            )
    writer = ArchiveWriter(
        store,
        run_id="1",
        started_at=STARTED,
        policy_name=None,
        policy_hash=None,
        schema_revision=None,
    )
    with pytest.raises(ArchiveError, match="table name"):
        writer.write_part("../runs", [{"id": 1}], key_column="id", rule="r", action="delete")
    with pytest.raises(ArchiveError, match="no 'id' column"):
        writer.write_part("runs", [{"other": 1}], key_column="id", rule="r", action="delete")
    assert os.listdir(tmp_path) == []


def test_encoding_is_stable_and_reversible() -> None:
    line = encode_row({"b": 1, "a": "é", "c": None})
    assert line == b'{"a":"\\u00e9","b":1,"c":null}\n'
    assert decode_value({"$base64": "AAE="}, bytes) == b"\x00\x01"
    assert decode_value(None, bytes) is None
    assert decode_value({"$base64": "kept"}, object) == {"$base64": "kept"}
    with pytest.raises(TypeError, match="cannot archive"):
        encode_row({"x": object()})


def test_a_large_part_is_several_gzip_members_read_as_one() -> None:
    rows = [{"id": n, "log": f"line {n} " + "x" * (n % 97)} for n in range(20_000)]
    lines = [encode_row(row) for row in rows]
    data = compress_lines(lines)
    members = 0
    rest = data
    while rest:
        inflate = zlib.decompressobj(wbits=31)
        inflate.decompress(rest)
        rest = inflate.unused_data
        members += 1
    assert members == -(-sum(map(len, lines)) // MEMBER_BYTES)
    assert gzip.decompress(data) == b"".join(lines)
    assert list(rows_of(data)) == rows
    assert compress_lines(lines) == data  # the same rows, the same bytes


def test_a_bounded_compressor_waits_for_its_members_and_writes_the_same_bytes() -> None:
    """With ``max_pending``, lines never run more than that many members ahead of the
    compression threads, and the part's bytes are those of an unbounded compressor."""
    lines = [encode_row({"id": n, "log": "y" * (n % 211)}) for n in range(30_000)]
    bounded = MemberCompressor(max_pending=1)
    for line in lines:
        bounded.add(line)
        assert sum(not member.done() for member in bounded._members) <= 1
    assert len(bounded._members) > 3
    assert bounded.result() == compress_lines(lines)


def test_rows_straight_from_sqlalchemy(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT 1 AS id, 'x' AS task UNION SELECT 2, 'y'")).mappings()
            writer = ArchiveWriter(
                LocalStore(tmp_path / "archives"),
                run_id="1",
                started_at=STARTED,
                policy_name=None,
                policy_hash=None,
                schema_revision=None,
            )
            part = writer.write_part("runs", rows.all(), key_column="id", rule="r", action="delete")
    finally:
        engine.dispose()
    assert part is not None
    assert list(iter_rows(writer.uri, part)) == [{"id": 1, "task": "x"}, {"id": 2, "task": "y"}]
