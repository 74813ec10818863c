"""An HTTP proxy on loopback in front of a gateway that records every request.

It forwards each request as it came (its ``Host`` header too, so the gateway's
own signed URLs — the local store's — point back through the proxy) and keeps
``(method, path)`` in `seen`, each request's ``Range`` header in `ranges`. With
`legacy`, it answers ``POST …/resolve`` 404 itself, as the legacy service (which
has no batch resolve) does.
"""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

from tests.client.loopback import Loopback, QuietHandler

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class RecordingProxy(Loopback):
    """Forwards to `upstream` (a base URL); a context manager."""

    def __init__(self, upstream: str, *, legacy: bool = False) -> None:
        parts = urlsplit(upstream)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.legacy = legacy
        self.seen: list[tuple[str, str]] = []
        self.ranges: list[str | None] = []
        self._lock = threading.Lock()
        super().__init__(_Forward)

    def reset(self) -> None:
        """Forget what was seen; forward everything again."""
        with self._lock:
            self.seen.clear()
            self.ranges.clear()
            self.legacy = False

    def record(self, method: str, path: str, http_range: str | None) -> None:
        with self._lock:
            self.seen.append((method, path))
            self.ranges.append(http_range)

    def paths(self, method: str, prefix: str) -> list[str]:
        """The paths asked with `method` that start with `prefix`."""
        with self._lock:
            return [path for seen, path in self.seen if seen == method and path.startswith(prefix)]


class _Forward(QuietHandler):
    owner: RecordingProxy

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.owner.record(self.command, self.path, self.headers.get("Range"))
        if self.owner.legacy and urlsplit(self.path).path.endswith("/resolve"):
            self._answer(404, [("Content-Type", "application/json")], json.dumps({}).encode())
            return
        connection = http.client.HTTPConnection(*self.owner.target, timeout=30)
        try:
            connection.request(self.command, self.path, body=body, headers=dict(self.headers))
            response = connection.getresponse()
            data = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            self._answer(response.status, headers, data)
        finally:
            connection.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
