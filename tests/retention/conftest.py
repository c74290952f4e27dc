"""Fixtures shared by the retention tests: a real S3 server (moto) for the whole session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

BUCKET = "taskledger-archives"


@dataclass
class S3Server:
    endpoint_url: str
    client: Any


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server in a thread on 127.0.0.1 with bucket ``BUCKET``; dummy credentials are
    set only while it is up. Skipped when boto3 or moto is not installed."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    with pytest.MonkeyPatch.context() as env:
        # Dummy values: boto3 must never find (or use) real credentials during these tests.
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", "/dev/null")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint_url = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint_url)
        try:
            client.create_bucket(Bucket=BUCKET)
            yield S3Server(endpoint_url, client)
        finally:
            client.close()
            server.stop()
