"""A small HTTP proxy in front of a real server, for the retry tests: it passes each request on
and, for the first few that match, throws the server's answer away and answers 503 instead, or
closes the connection without answering. The server has acted on those requests; only the
client's idempotency keys keep the retries from recording twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Faults:
    """What the proxy does: ``mode`` ("503" or "drop") for the next ``remaining`` requests to a
    path starting with ``prefix``; every request seen is logged."""

    mode: str = "503"
    prefix: str = "/api/v1/runs"
    remaining: int = 0
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> str | None:
        with self.lock:
            self.seen.append(f"{method} {path}")
            if self.remaining > 0 and path.startswith(self.prefix):
                self.remaining -= 1
                return self.mode
            return None


@contextmanager
def proxy(upstream: str, faults: Faults) -> Iterator[str]:
    client = httpx.Client(base_url=upstream, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            answer = client.request(self.command, self.path, content=body, headers=headers)
            fault = faults.take(self.command, self.path)
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            status, content = answer.status_code, answer.content
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
            if fault == "503":
                status, content = 503, b'{"detail": "unavailable (injected)"}'
                out = {"Content-Type": "application/json", "Retry-After": "0"}
            self.send_response(status)
            for name, value in out.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PATCH = do_DELETE = _relay

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
