"""Archive behaviour every store must show; test_archive and test_archive_s3 run it per store.

A test module subclasses :class:`ArchiveContract` and provides a ``backend`` fixture. The backend
touches stored objects directly (pathlib, or boto3 on S3) so corruption is made by hand, not
through the code under test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID, uuid4

import pytest

from taskledger.retention.archive.format import PartInfo, decode_value
from taskledger.retention.archive.reader import (
    ArchiveReader,
    iter_rows,
    list_archives,
    read_manifest,
    verify,
)
from taskledger.retention.archive.stores import (
    ArchiveCorrupt,
    ArchiveError,
    ArchiveExists,
    ArchiveNotFound,
    open_store,
)
from taskledger.retention.archive.writer import ArchiveWriter

STARTED = datetime(2026, 11, 28, 3, 15, tzinfo=UTC)

# Column types of the sample rows, as restore would take them from the table.
RUN_TYPES: dict[str, type] = {
    "id": int,
    "project_id": UUID,
    "started_at": datetime,
    "due": date,
    "cost": Decimal,
    "blob": bytes,
}


def sample_runs(first: int, count: int) -> list[dict[str, Any]]:
    """Rows shaped like runs, with every kind of value the encoding must carry."""
    return [
        {
            "id": first + n,
            "project_id": UUID(int=first + n),
            "task": f"tâche-{n} 数据 🚀",
            "status": "completed",
            "started_at": datetime(2026, 1, 1, 12, 0, n, 123456, tzinfo=UTC),
            "due": date(2026, 2, 1),
            "cost": Decimal("0.10000000000000000001"),
            "blob": bytes(range(n, n + 8)),
            "inputs": {"nested": {"list": [1, 2.5, None, "x"]}, "ok": True, "emoji": "✓"},
            "log_excerpt": None,
        }
        for n in range(count)
    ]


def decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: decode_value(value, RUN_TYPES.get(key, object)) for key, value in row.items()}


class Backend(Protocol):
    root_url: str
    s3_endpoint_url: str | None

    def raw_read(self, archive_uri: str, name: str) -> bytes: ...

    def raw_write(self, archive_uri: str, name: str, data: bytes) -> None: ...

    def raw_delete(self, archive_uri: str, name: str) -> None: ...


@dataclass
class Written:
    """An archive written by a test."""

    uri: str
    parts: list[PartInfo]


class ArchiveContract:
    """The behaviour shared by every archive store."""

    def writer(
        self, backend: Backend, run_id: str, started_at: datetime = STARTED
    ) -> ArchiveWriter:
        store = open_store(backend.root_url, s3_endpoint_url=backend.s3_endpoint_url)
        return ArchiveWriter(
            store,
            run_id=run_id,
            started_at=started_at,
            policy_name="default",
            policy_hash="ab" * 32,
            schema_revision="20261128_0001",
        )

    def write(
        self, backend: Backend, run_id: str, batches: Sequence[Sequence[dict[str, Any]]]
    ) -> Written:
        writer = self.writer(backend, run_id)
        try:
            parts = []
            for rows in batches:
                part = writer.write_part(
                    "runs", rows, key_column="id", rule="old-runs", action="delete"
                )
                assert part is not None
                parts.append(part)
            writer.finish()
            return Written(writer.uri, parts)
        finally:
            writer.store.close()

    def verify(self, backend: Backend, uri: str) -> Any:
        return verify(uri, s3_endpoint_url=backend.s3_endpoint_url)

    def rows(self, backend: Backend, uri: str, part: PartInfo) -> list[dict[str, Any]]:
        return list(iter_rows(uri, part, s3_endpoint_url=backend.s3_endpoint_url))

    # --- round trip -------------------------------------------------------------------------

    def test_round_trip_keeps_every_type(self, backend: Backend) -> None:
        writer = self.writer(backend, "101")
        runs = sample_runs(1, 3)
        tasks = [{"id": uuid4(), "title": "ünïcode", "completed_at": None}]
        first = writer.write_part("runs", runs[:2], key_column="id", rule="r", action="delete")
        task_part = writer.write_part("tasks", tasks, key_column="id", rule="t", action="scrub")
        second = writer.write_part("runs", runs[2:], key_column="id", rule="r", action="delete")
        manifest = writer.finish()
        writer.store.close()
        assert first is not None and second is not None and task_part is not None

        assert writer.uri.endswith("2026/11/101")
        assert [f.name for f in manifest.files] == [
            "runs-00001.jsonl.gz",
            "tasks-00001.jsonl.gz",
            "runs-00002.jsonl.gz",
        ]
        assert (first.rows, first.key_min, first.key_max) == (2, "1", "2")
        assert (task_part.key_min, task_part.table, task_part.action) == (
            str(tasks[0]["id"]),
            "tasks",
            "scrub",
        )

        read = read_manifest(writer.uri, s3_endpoint_url=backend.s3_endpoint_url)
        assert read == manifest
        assert read.complete and read.run_id == "101" and read.created_at == STARTED
        assert (read.policy_name, read.schema_revision) == ("default", "20261128_0001")

        back = self.rows(backend, writer.uri, first) + self.rows(backend, writer.uri, second)
        assert [decoded(row) for row in back] == runs
        assert self.rows(backend, writer.uri, task_part) == [
            {"id": str(tasks[0]["id"]), "title": "ünïcode", "completed_at": None}
        ]
        report = self.verify(backend, writer.uri)
        assert report.ok and report.complete and report.messages == []
        assert [check.name for check in report.files] == [f.name for f in manifest.files]

    def test_datetimes_are_stored_as_utc_with_offset(self, backend: Backend) -> None:
        plus_two = timezone(timedelta(hours=2))
        row = {"id": 1, "at": datetime(2026, 5, 1, 14, 0, tzinfo=plus_two)}
        written = self.write(backend, "utc", [[row]])
        (back,) = self.rows(backend, written.uri, written.parts[0])
        assert back["at"] == "2026-05-01T12:00:00+00:00"
        assert decode_value(back["at"], datetime) == row["at"]

    def test_identical_rows_give_identical_bytes(self, backend: Backend) -> None:
        rows = sample_runs(1, 5)
        one = self.write(backend, "same-1", [rows])
        two = self.write(backend, "same-2", [rows])
        assert one.parts[0].sha256 == two.parts[0].sha256
        name = one.parts[0].name
        assert backend.raw_read(one.uri, name) == backend.raw_read(two.uri, name)

    def test_empty_batches_write_nothing(self, backend: Backend) -> None:
        writer = self.writer(backend, "empty")
        assert writer.write_part("runs", [], key_column="id", rule="r", action="delete") is None
        assert writer.finish().files == ()
        writer.store.close()
        with pytest.raises(ArchiveNotFound, match="no archive manifest"):
            read_manifest(writer.uri, s3_endpoint_url=backend.s3_endpoint_url)

    # --- interruption -----------------------------------------------------------------------

    def test_manifest_is_rewritten_after_every_part(self, backend: Backend) -> None:
        writer = self.writer(backend, "cut")
        listed = []
        for first in (1, 11):
            writer.write_part(
                "runs", sample_runs(first, 10), key_column="id", rule="r", action="delete"
            )
            manifest = read_manifest(writer.uri, s3_endpoint_url=backend.s3_endpoint_url)
            listed.append([f.name for f in manifest.files])
        writer.store.close()  # the process "dies" here: finish() is never called

        assert listed == [["runs-00001.jsonl.gz"], ["runs-00001.jsonl.gz", "runs-00002.jsonl.gz"]]
        manifest = read_manifest(writer.uri, s3_endpoint_url=backend.s3_endpoint_url)
        assert manifest.complete is False
        assert [(f.key_min, f.key_max) for f in manifest.files] == [("1", "10"), ("11", "20")]
        report = self.verify(backend, writer.uri)
        assert report.ok and not report.complete

    def test_an_unlisted_part_fails_verify_whether_the_run_finished_or_not(
        self, backend: Backend
    ) -> None:
        # What a run that died on its manifest update (ENOSPC, SIGKILL) leaves: an unfinished
        # manifest listing one part, and the next part stored but never listed.
        writer = self.writer(backend, "stray")
        writer.write_part("runs", sample_runs(1, 2), key_column="id", rule="r", action="delete")
        writer.store.close()
        stray = backend.raw_read(writer.uri, "runs-00001.jsonl.gz")
        backend.raw_write(writer.uri, "runs-00002.jsonl.gz", stray)
        for complete in (False, True):
            manifest = json.loads(backend.raw_read(writer.uri, "manifest.json"))
            manifest["complete"] = complete
            backend.raw_write(writer.uri, "manifest.json", json.dumps(manifest).encode())
            report = self.verify(backend, writer.uri)
            assert not report.ok and report.complete is complete
            assert report.unlisted == ["runs-00002.jsonl.gz"]
            [message] = report.messages
            assert "runs-00002.jsonl.gz" in message and "not listed in the manifest" in message
            with pytest.raises(ArchiveCorrupt, match=re.escape("runs-00002.jsonl.gz")):
                report.raise_for_problems()

    def test_a_run_directory_is_never_written_twice(self, backend: Backend) -> None:
        self.write(backend, "twice", [sample_runs(1, 1)])
        with pytest.raises(ArchiveExists, match="twice"):
            self.writer(backend, "twice")

    def test_no_parts_after_finish(self, backend: Backend) -> None:
        writer = self.writer(backend, "done")
        writer.write_part("runs", sample_runs(1, 1), key_column="id", rule="r", action="delete")
        writer.finish()
        with pytest.raises(ArchiveError, match="finished"):
            writer.write_part("runs", sample_runs(2, 1), key_column="id", rule="r", action="delete")
        writer.store.close()

    # --- corruption -------------------------------------------------------------------------

    def assert_corrupt(self, backend: Backend, written: Written, name: str, reason: str) -> None:
        report = self.verify(backend, written.uri)
        assert not report.ok
        bad = [check for check in report.files if not check.ok]
        assert [check.name for check in bad] == [name]
        assert any(reason in message and name in message for message in report.messages), (
            report.messages
        )
        with pytest.raises(ArchiveCorrupt, match=name):
            report.raise_for_problems()
        part = next(p for p in written.parts if p.name == name)
        with pytest.raises(ArchiveCorrupt, match=name):
            self.rows(backend, written.uri, part)

    def test_a_flipped_byte_fails(self, backend: Backend) -> None:
        written = self.write(backend, "flip", [sample_runs(1, 50), sample_runs(51, 50)])
        name = "runs-00002.jsonl.gz"
        data = bytearray(backend.raw_read(written.uri, name))
        data[len(data) // 2] ^= 0x01
        backend.raw_write(written.uri, name, bytes(data))
        self.assert_corrupt(backend, written, name, "sha256")
        # The untouched part still reads.
        assert len(self.rows(backend, written.uri, written.parts[0])) == 50

    def test_a_truncated_part_fails(self, backend: Backend) -> None:
        written = self.write(backend, "trunc", [sample_runs(1, 50)])
        name = "runs-00001.jsonl.gz"
        data = backend.raw_read(written.uri, name)
        backend.raw_write(written.uri, name, data[: len(data) - 20])
        self.assert_corrupt(backend, written, name, "size")
        report = self.verify(backend, written.uri)
        assert any("decompress" in message for message in report.messages)

    def test_a_missing_part_fails(self, backend: Backend) -> None:
        written = self.write(backend, "gone", [sample_runs(1, 5), sample_runs(6, 5)])
        backend.raw_delete(written.uri, "runs-00001.jsonl.gz")
        self.assert_corrupt(backend, written, "runs-00001.jsonl.gz", "missing")

    @pytest.mark.parametrize("change", ["extra line", "missing line"])
    def test_a_rewritten_part_with_a_matching_checksum_fails_on_its_count(
        self, backend: Backend, change: str
    ) -> None:
        # Someone rewrites a part and patches size and sha256 in the manifest: only the row
        # count is left to give it away.
        written = self.write(backend, "recount", [sample_runs(1, 5)])
        name = "runs-00001.jsonl.gz"
        lines = gzip.decompress(backend.raw_read(written.uri, name)).splitlines(keepends=True)
        lines = [*lines, lines[0]] if change == "extra line" else lines[:-1]
        data = gzip.compress(b"".join(lines), mtime=0)
        backend.raw_write(written.uri, name, data)
        manifest = json.loads(backend.raw_read(written.uri, "manifest.json"))
        manifest["files"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        backend.raw_write(written.uri, "manifest.json", json.dumps(manifest).encode())

        patched = read_manifest(written.uri, s3_endpoint_url=backend.s3_endpoint_url)
        written.parts[0] = patched.files[0]
        self.assert_corrupt(backend, written, name, "manifest says 5")

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("rows", 6, "holds 5 rows, manifest says 6"),
            ("sha256", "0" * 64, "sha256"),
            ("bytes", 1, "size"),
        ],
    )
    def test_an_edited_manifest_fails(
        self, backend: Backend, field: str, value: Any, reason: str
    ) -> None:
        written = self.write(backend, "edited", [sample_runs(1, 5), sample_runs(6, 5)])
        manifest = json.loads(backend.raw_read(written.uri, "manifest.json"))
        manifest["files"][1][field] = value
        backend.raw_write(written.uri, "manifest.json", json.dumps(manifest).encode())
        edited = read_manifest(written.uri, s3_endpoint_url=backend.s3_endpoint_url)
        written.parts[1] = edited.files[1]
        self.assert_corrupt(backend, written, "runs-00002.jsonl.gz", reason)

    def test_an_unparsable_or_missing_manifest_is_a_clear_error(self, backend: Backend) -> None:
        written = self.write(backend, "nomanifest", [sample_runs(1, 2)])
        backend.raw_write(written.uri, "manifest.json", b'{"format": "taskledger-archive/1",')
        with pytest.raises(ArchiveCorrupt, match=r"manifest .*manifest\.json is unreadable"):
            self.verify(backend, written.uri)
        backend.raw_write(written.uri, "manifest.json", b'{"format": "other/9"}')
        with pytest.raises(ArchiveCorrupt, match="unsupported format"):
            self.verify(backend, written.uri)
        backend.raw_delete(written.uri, "manifest.json")
        with pytest.raises(ArchiveNotFound, match="no archive manifest"):
            self.verify(backend, written.uri)

    def test_a_manifest_cannot_point_outside_its_archive(self, backend: Backend) -> None:
        written = self.write(backend, "escape", [sample_runs(1, 2)])
        manifest = json.loads(backend.raw_read(written.uri, "manifest.json"))
        manifest["files"][0]["name"] = "../escape/runs-00001.jsonl.gz"
        backend.raw_write(written.uri, "manifest.json", json.dumps(manifest).encode())
        with pytest.raises(ArchiveCorrupt, match="unsafe archive key"):
            self.verify(backend, written.uri)

    def test_a_manifest_cannot_relabel_a_part_as_another_table(self, backend: Backend) -> None:
        written = self.write(backend, "relabel", [sample_runs(1, 2)])
        manifest = json.loads(backend.raw_read(written.uri, "manifest.json"))
        manifest["files"][0]["table"] = "tasks"
        backend.raw_write(written.uri, "manifest.json", json.dumps(manifest).encode())
        with pytest.raises(ArchiveCorrupt, match="does not name a part of table 'tasks'"):
            self.verify(backend, written.uri)

    def test_one_reader_streams_every_part(self, backend: Backend) -> None:
        written = self.write(backend, "reader", [sample_runs(1, 3), sample_runs(4, 3)])
        with ArchiveReader(written.uri, s3_endpoint_url=backend.s3_endpoint_url) as reader:
            ids = [row["id"] for part in reader.manifest.files for row in reader.iter_rows(part)]
            assert reader.verify().ok
        assert ids == [1, 2, 3, 4, 5, 6]

    # --- listing ----------------------------------------------------------------------------

    def test_list_archives_newest_first(self, backend: Backend) -> None:
        for run_id, started, batches in [
            ("7", datetime(2026, 9, 30, 23, 0, tzinfo=UTC), [sample_runs(1, 2)]),
            ("8", datetime(2026, 10, 1, 1, 0, tzinfo=UTC), [sample_runs(1, 3), sample_runs(4, 1)]),
        ]:
            writer = self.writer(backend, run_id, started)
            for rows in batches:
                writer.write_part("runs", rows, key_column="id", rule="r", action="delete")
            if run_id == "7":
                writer.finish()
            writer.store.close()
        broken = self.write(backend, "9", [sample_runs(1, 1)])
        backend.raw_write(broken.uri, "manifest.json", b"not json")

        summaries = list_archives(backend.root_url, s3_endpoint_url=backend.s3_endpoint_url)
        assert [(s.run_id, s.complete, s.files, s.rows) for s in summaries] == [
            ("9", False, 0, 0),  # November, known only by its directory
            ("8", False, 2, 4),
            ("7", True, 1, 2),
        ]
        assert summaries[0].error is not None and "unreadable" in summaries[0].error
        assert summaries[1].uri.endswith("2026/10/8") and summaries[2].uri.endswith("2026/09/7")
        assert summaries[1].bytes > 0 and summaries[1].created_at is not None
        assert verify(summaries[1].uri, s3_endpoint_url=backend.s3_endpoint_url).ok

    def test_list_archives_of_an_empty_root(self, backend: Backend) -> None:
        assert list_archives(backend.root_url, s3_endpoint_url=backend.s3_endpoint_url) == []
