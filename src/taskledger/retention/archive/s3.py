"""Archives on S3-compatible object storage (AWS, MinIO, Ceph, moto...): :class:`S3Store`.

:func:`taskledger.retention.archive.stores.open_store` returns one for an ``s3://`` URL; boto3 (the
``s3`` extra) is imported only when a store is opened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from typing import Any

from taskledger.errors import ConfigurationError
from taskledger.retention.archive.stores import ArchiveNotFound, ArchiveStorageError, check_key

log = logging.getLogger(__name__)


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# What an S3-compatible endpoint answers when it does not know the SHA-256 checksum header.
_CHECKSUM_UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest"}


class S3Store:
    """An archive store in an S3 bucket under a key prefix (AWS, MinIO, Ceph, moto...).

    Every upload carries a checksum the server verifies before it stores the object: SHA-256
    (``x-amz-checksum-sha256``), or Content-MD5 for endpoints that refuse the former.
    """

    #: Keys per ListObjectsV2 page; S3's own maximum, lowered by tests to exercise paging.
    list_page_size = 1000

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        """Open a store on ``s3://bucket/prefix``.

        Args:
            bucket: Bucket name.
            prefix: Key prefix without leading or trailing ``/``; may be empty.
            endpoint_url: Custom endpoint of an S3-compatible service.
            client: A ready boto3 S3 client; the store then never closes it.

        Raises:
            ConfigurationError: boto3 is not installed (the ``s3`` extra).
        """
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self._owns_client = client is None
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise ConfigurationError(
                    "S3 archives need boto3: install taskledger with the s3 extra "
                    "(pip install 'taskledger[s3]')"
                ) from exc
            # We send our own checksums; botocore's automatic ones use aws-chunked trailers
            # that several S3-compatible servers reject.
            config = Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 5, "mode": "standard"},
            )
            client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client
        self._sha256_supported = True

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data``; a completed ``PutObject`` is durable on S3."""
        full = self._key(check_key(key))
        errors = _boto_errors()
        if self._sha256_supported:
            digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=full, Body=data, ChecksumSHA256=digest
                )
                return
            except errors as exc:
                if _error_code(exc) not in _CHECKSUM_UNSUPPORTED:
                    raise ArchiveStorageError(f"could not write {self.uri(key)}: {exc}") from exc
                log.warning(
                    "s3://%s refused a SHA-256 upload checksum (%s); using Content-MD5 instead",
                    self.bucket,
                    _error_code(exc),
                )
                self._sha256_supported = False
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentMD5=md5)
        except errors as exc:
            raise ArchiveStorageError(f"could not write {self.uri(key)}: {exc}") from exc

    def get(self, key: str) -> bytes:
        """Download the whole object."""
        full = self._key(check_key(key))
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            with contextlib.closing(response["Body"]) as body:
                data: bytes = body.read()
            return data
        except _boto_errors() as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ArchiveNotFound(f"{self.uri(key)} does not exist") from exc
            raise ArchiveStorageError(f"could not read {self.uri(key)}: {exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, following every page of the listing."""
        full = self._key(check_key(prefix, prefix=True))
        strip = len(self._key(""))
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except _boto_errors() as exc:
            raise ArchiveStorageError(f"could not list {self.uri(prefix)}: {exc}") from exc
        return sorted(keys)

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        full = self._key(check_key(key))
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except _boto_errors() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise ArchiveStorageError(f"could not check {self.uri(key)}: {exc}") from exc
        return True

    def uri(self, key: str = "") -> str:
        """``s3://bucket/prefix/key``."""
        path = self._key(key).rstrip("/") if key else self.prefix
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    def close(self) -> None:
        """Close the HTTP connections of a client this store created."""
        if self._owns_client:
            self.client.close()
