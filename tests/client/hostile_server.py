"""A tooltool server on loopback that misbehaves as a test tells it to.

It answers ``GET /sha512/<digest>`` with a 302 to its own blob URL
``/blobs/<digest>?token=<secret>`` (a query the client must never print) and,
when `has_resolve`, ``POST /resolve`` with every digest's blob URL (or, when
`resolve_status` is set, that status and a problem body). With `direct`, it
answers ``GET /sha512/<digest>`` with the bytes themselves, as a plain mirror does. Each blob
request takes the next action of `plan` (then ``ok``):

- ``ok``: the bytes, honouring ``Range`` (206 and ``Content-Range``);
- ``wrong-bytes``: as many other bytes;
- ``cut``: the headers of the whole answer, `cut_at` bytes of it, then the connection closes;
- ``ignore-range``: 200 and the whole file, whatever ``Range`` asked;
- ``wrong-range``: 206 whose ``Content-Range`` starts at 0, whatever was asked;
- ``too-many``: the bytes and a megabyte more, with no ``Content-Length`` (the
  connection's close ends them);
- ``error``: 500 with a problem body;
- ``expired``: 403, as a store refuses an expired signed URL;
- ``slow``: the bytes in 64 KiB pieces, `delay` seconds before each (read anew each piece);
- ``hang``: nothing, until the server stops;
- ``redirect``: a 302 to a new signed blob URL (as a CDN may send on to its origin).

`locate_plan` does the same for ``GET /sha512/<digest>`` (``error``: 500, else the
302). Every request is recorded in `seen`; `sent` counts blob bytes sent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.client.loopback import Loopback, QuietHandler

SECRET = "SECRET-signature"
PIECE = 64 * 1024


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]


class HostileServer(Loopback):
    """Serves `blobs` (digest → bytes) as the module's docstring says; a context manager."""

    def __init__(self, blobs: Mapping[str, bytes], *, has_resolve: bool = False) -> None:
        self.blobs = dict(blobs)
        self.has_resolve = has_resolve
        self.resolve_status = 0
        self.direct = False
        self.plan: list[str] = []
        self.locate_plan: list[str] = []
        self.cut_at = 0
        self.delay = 0.0
        self.seen: list[Seen] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._tokens = 0
        super().__init__(_Handler)

    def blob_gets(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.startswith("/blobs/")]

    def locates(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.startswith("/sha512/")]

    def next_action(self, plan: list[str]) -> str:
        with self._lock:
            return plan.pop(0) if plan else "ok"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def count_sent(self, count: int) -> None:
        with self._lock:
            self.sent += count

    def signed_path(self, digest: str) -> str:
        with self._lock:
            self._tokens += 1
            return f"/blobs/{digest}?token={SECRET}-{self._tokens}"


class _Handler(QuietHandler):
    owner: HostileServer

    def do_GET(self) -> None:
        self.owner.record(Seen("GET", self.path, dict(self.headers.items())))
        parts = urlsplit(self.path)
        kind, _, digest = parts.path.strip("/").partition("/")
        if digest not in self.owner.blobs or kind not in ("sha512", "blobs"):
            self._problem(404, "Not Found")
        elif kind == "sha512" and not self.owner.direct:
            self._locate(digest)
        else:
            self._blob(self.owner.blobs[digest])

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.owner.record(Seen("POST", self.path, dict(self.headers.items())))
        if not self.owner.has_resolve or urlsplit(self.path).path != "/resolve":
            self._problem(404, "Not Found")
            return
        if self.owner.resolve_status:
            self._problem(self.owner.resolve_status, "Unavailable")
            return
        files = []
        for entry in json.loads(body):
            digest = entry["digest"]
            if digest in self.owner.blobs:
                url = self.owner.url.rstrip("/") + self.owner.signed_path(digest)
                files.append({"digest": digest, "url": url})
            else:
                files.append({"digest": digest, "problem": {"status": 404, "detail": "no"}})
        self._send(200, json.dumps({"files": files}).encode(), "application/json")

    def _locate(self, digest: str) -> None:
        if self.owner.next_action(self.owner.locate_plan) == "error":
            self._problem(500, "Internal Server Error")
            return
        self.send_response(302)
        self.send_header("Location", self.owner.signed_path(digest))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _blob(self, data: bytes) -> None:
        action = self.owner.next_action(self.owner.plan)
        start = _range_start(self.headers.get("Range"))
        if action == "redirect":
            self.send_response(302)
            self.send_header("Location", self.owner.signed_path(urlsplit(self.path).path[7:]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif action == "hang":
            self.owner.stopped.wait()
            self.close_connection = True
        elif action in ("error", "expired"):
            status = 500 if action == "error" else 403
            self._problem(status, "Request signature refused: expired")
        elif action == "wrong-bytes":
            self._send(200, bytes(255 - b for b in data))
        elif action == "too-many":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._write(data + b"\0" * 1024 * 1024)
            self.close_connection = True
        elif action == "cut":
            self._send_head(200, len(data))
            self._write(data[: self.owner.cut_at])
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif action == "wrong-range" or (start and action != "ignore-range"):
            first = 0 if action == "wrong-range" else start
            self._send_head(206, len(data) - first, f"bytes {first}-{len(data) - 1}/{len(data)}")
            self._write(data[first:], slow=action == "slow")
        else:
            self._send_head(200, len(data))
            self._write(data, slow=action == "slow")

    def _problem(self, status: int, detail: str) -> None:
        body = {"detail": detail, "status": status, "title": detail, "type": "about:blank"}
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "") -> None:
        self._send_head(status, len(body), content_type=content_type)
        self._write(body)

    def _send_head(
        self, status: int, length: int, content_range: str = "", content_type: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", content_type or "application/octet-stream")
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def _write(self, data: bytes, *, slow: bool = False) -> None:
        try:
            for offset in range(0, len(data), PIECE):
                if slow and self.owner.stopped.wait(self.owner.delay):
                    return
                piece = data[offset : offset + PIECE]
                self.wfile.write(piece)
                self.wfile.flush()
                self.owner.count_sent(len(piece))
        except OSError:  # the client went away
            self.close_connection = True


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return 0
    return int(header[len("bytes=") : -1])
