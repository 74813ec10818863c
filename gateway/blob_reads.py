"""Sending a whole local-store blob: its reads served from the page cache in the event
loop, and only reads that would wait on the disk sent to a worker thread.

Starlette's FileResponse hands every read to a worker thread; for a blob that is in
the page cache (most are: they were just written or just read) that hop is most of
what a read costs: reading 520 MB this way took the event loop about 0.22 s of CPU
against 0.36 to 0.44 s (bench/client_fetch.py). A read asks the kernel for cached bytes
only (``preadv`` with ``RWF_NOWAIT``): what is cached comes back at once, what is not
answers EAGAIN, and that read goes to a thread. Where the flag is unknown (another
kernel or platform), every read goes to a thread, as before.
"""

from __future__ import annotations

import errno
import os

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

CHUNK = 1024 * 1024
_NOWAIT = getattr(os, "RWF_NOWAIT", None)


class WholeFileResponse(FileResponse):
    """A 200 with the whole file (FileResponse's headers), read a CHUNK at a time."""

    chunk_size = CHUNK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope["method"].upper() == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        assert self.stat_result is not None  # the blob route always gives it
        size = self.stat_result.st_size
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            offset = 0
            while True:
                chunk = await read_chunk(fd, offset, min(self.chunk_size, size - offset))
                offset += len(chunk)
                more = bool(chunk) and offset < size
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return
        finally:
            os.close(fd)


async def read_chunk(fd: int, offset: int, count: int) -> bytes | bytearray:
    """Up to `count` bytes at `offset` (b"" at the end of the file)."""
    if count <= 0:
        return b""
    cached = _read_cached(fd, offset, count)
    if cached is not None:
        return cached
    return await run_in_threadpool(os.pread, fd, count, offset)


def _read_cached(fd: int, offset: int, count: int) -> bytes | bytearray | None:
    """What the page cache holds from `offset` (a prefix of the range), or None when
    none of it is cached or the kernel cannot say without waiting."""
    global _NOWAIT
    if _NOWAIT is None:
        return None
    buffer = bytearray(count)
    try:
        got = os.preadv(fd, [buffer], offset, _NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            _NOWAIT = None  # not on this kernel or filesystem: threads from now on
            return None
        raise
    if got == 0:
        return None  # the end of the file, or nothing cached: the thread read says which
    # The buffer itself when whole (sent as is: servers take any bytes-like body).
    return buffer if got == count else bytes(memoryview(buffer)[:got])
