"""A synchronous client of ``pagefind --service``, the binary that ``pagefind[bin]`` ships.

Pagefind's own Python wrapper (``pagefind.index.PagefindIndex``) speaks the same
protocol, but its reader sleeps 100 ms before each response: records go in at
ten a second, so a site of 100,000 files would take hours to index. It also
needs an event loop of its own, which the indexer (a thread of the gateway, or
the command line) would have to start beside any loop already running. This
client writes one request and reads its answer in the calling thread, through a
plain subprocess, so it works from any thread whatever loop runs elsewhere.

The protocol, as both of Pagefind's wrappers speak it: each message is a JSON
object ``{"message_id": n, "payload": {"type": ...}}``, base64-encoded and
followed by a comma, on the service's stdin; each answer comes back the same
way on its stdout, with the same ``message_id``. The binary is found the way
the wrapper finds it (``PAGEFIND_BINARY_PATH``, then the bundled binary).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
from types import TracebackType
from typing import IO, Any

from pagefind.service import get_executable

_READ = 1 << 20
_STOP_SECONDS = 10
IDLE_SECONDS = 120.0  # no progress from the service this long: it is stuck


class PagefindError(Exception):
    """The Pagefind service could not be started, refused a request, or died."""


class PagefindService:
    """One ``pagefind --service`` process, used as a context manager."""

    def __init__(self, *, seconds: float = 3600.0, idle: float | None = None) -> None:
        """`seconds`: how long the whole conversation may take; `idle`: how long one
        read or write may wait for the service. Past either, it is killed."""
        self._deadline = time.monotonic() + seconds
        self._idle = IDLE_SECONDS if idle is None else idle
        executable = get_executable()
        if executable is None:
            raise PagefindError("no pagefind binary: install pagefind[bin]")
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._buffer = b""
        self._message_id = 0

    def __enter__(self) -> PagefindService:
        self._errors = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(  # noqa: S603 (the binary pagefind[bin] ships)
                [str(self._executable), "--service"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
            )
        except OSError as exc:
            self._errors.close()
            raise PagefindError(f"cannot start {self._executable}: {exc}") from exc
        assert self._process.stdin is not None
        os.set_blocking(self._process.stdin.fileno(), False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None
            with contextlib.suppress(OSError):  # already gone: nothing to tell it
                process.stdin.close()  # the service ends when its input does
            try:
                process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its answer's payload."""
        process = self._process
        if process is None or process.stdin is None:
            raise PagefindError("the pagefind service is not running")
        self._message_id += 1
        message = {"message_id": self._message_id, "payload": payload}
        self._write(base64.b64encode(json.dumps(message).encode()) + b",")
        answer = self._read()
        result: dict[str, Any] = answer["payload"]
        # A request the service cannot parse is answered without its message_id.
        if result.get("type") == "Error":
            raise PagefindError(f"pagefind refused {payload['type']}: {result.get('message')}")
        if answer.get("message_id") != self._message_id:
            raise PagefindError(f"pagefind answered {answer.get('message_id')!r} out of turn")
        return result

    def _wait(self) -> float:
        """How long the next read or write may wait; a stuck service is killed."""
        left = min(self._idle, self._deadline - time.monotonic())
        if left <= 0:
            raise self._stuck()
        return left

    def _stuck(self) -> PagefindError:
        assert self._process is not None
        self._process.kill()
        return PagefindError("the pagefind service stopped answering: it was stopped")

    def _write(self, data: bytes) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        descriptor = self._process.stdin.fileno()
        pending = memoryview(data)
        while pending:
            _, ready, _ = select.select([], [descriptor], [], self._wait())
            if not ready:
                raise self._stuck()
            try:
                pending = pending[os.write(descriptor, pending) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise self._died() from exc

    def _read(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        # Base64 has no comma: the first one ends the answer (the bundle's is megabytes:
        # each piece read is searched once).
        parts = [self._buffer]
        while (end := parts[-1].find(b",")) < 0:
            ready, _, _ = select.select([descriptor], [], [], self._wait())
            if not ready:
                raise self._stuck()
            chunk = os.read(descriptor, _READ)
            if not chunk:
                raise self._died()
            parts.append(chunk)
        raw = b"".join([*parts[:-1], parts[-1][:end]])
        self._buffer = parts[-1][end + 1 :]
        try:
            answer = json.loads(base64.b64decode(raw, validate=True))
        except ValueError as exc:
            raise PagefindError(f"pagefind answered what is not a message: {raw[:80]!r}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("payload"), dict):
            raise PagefindError(f"pagefind answered what is not a message: {raw[:80]!r}")
        return answer

    def _died(self) -> PagefindError:
        assert self._process is not None
        assert self._errors is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1)
        status = self._process.poll()
        self._errors.seek(0)
        said = self._errors.read()[-2000:].decode("utf-8", "replace").strip()
        return PagefindError(f"the pagefind service stopped (exit status {status}): {said}")


def bundle(records: list[dict[str, Any]], *, language: str = "en") -> list[tuple[str, bytes]]:
    """The search bundle of `records` (``url``, ``content``, ``meta``), indexed in the
    order given, as (path inside the bundle, bytes) in Pagefind's order.

    The files come back in the answer, not written to disk: the service answers a
    ``WriteFiles`` before the last of its writes has landed, so a bundle read back at
    once may hold an empty file.
    """
    # Pagefind takes about 0.7 ms a record at 100,000: a hundred times that is stuck.
    with PagefindService(seconds=300 + 0.07 * len(records)) as service:
        created = service.request({"type": "NewIndex", "config": {"force_language": language}})
        index_id = created["index_id"]
        for record in records:
            service.request(
                {
                    "type": "AddRecord",
                    "index_id": index_id,
                    "url": _text(record["url"]),
                    "content": _text(record["content"]),
                    "language": language,
                    "meta": {str(key): _text(value) for key, value in record["meta"].items()},
                    "filters": None,
                    "sort": None,
                }
            )
        answer = service.request({"type": "GetFiles", "index_id": index_id})
    return [(str(file["path"]), base64.b64decode(file["content"])) for file in answer["files"]]


def _text(value: object) -> str:
    """Text Pagefind takes: a lone surrogate (which JSON would escape, and Pagefind
    refuses) becomes a replacement character."""
    return str(value).encode("utf-8", "replace").decode("utf-8")
