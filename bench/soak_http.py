"""A kept-alive HTTP/1.1 connection on asyncio streams: the soak's client.

As small as the load allows, so that the two cores go to the servers: one request at a
time per connection, bodies by Content-Length or chunked, a new connection when the
server closed the last one or it sat idle past servers' keep-alive timeouts. Anything
unexpected (a malformed head, a connection cut mid-answer) raises :class:`HTTPError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
IDLE_SECONDS = 2.0  # under uvicorn's keep-alive timeout (5 s)


class HTTPError(Exception):
    """The exchange failed below HTTP: no answer, or not one that parses."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names; the last of repeated ones
    body: bytes


class Connection:
    """Requests to one ``host:port``, one at a time, on a connection kept open."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.host, self.port = host, port
        self._timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = 0.0

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Answer:
        """One exchange; raises HTTPError, also when no answer came within the timeout."""
        try:
            return await asyncio.wait_for(
                self._exchange(method, target, headers, body), self._timeout
            )
        except TimeoutError as exc:
            self.close()  # an answer may still be on its way: never read it as the next one
            raise HTTPError(f"no answer within {self._timeout:g} s") from exc

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def _exchange(
        self, method: str, target: str, headers: Mapping[str, str] | None, body: bytes
    ) -> Answer:
        if self._streams is not None and time.monotonic() - self._used > IDLE_SECONDS:
            self.close()
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
        reader, writer = self._streams
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            answer = await _read_answer(reader, method)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        except HTTPError:
            self.close()
            raise
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        self._used = time.monotonic()
        return answer


async def _read_answer(reader: asyncio.StreamReader, method: str) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP/1.x status line: {status_line[:100]!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(parts[1])
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Answer(status, headers, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Answer(status, headers, await _read_chunked(reader))
    if "content-length" in headers:
        return Answer(status, headers, await reader.readexactly(int(headers["content-length"])))
    headers["connection"] = "close"  # the body runs to the end of the connection
    return Answer(status, headers, await reader.read())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
