"""Hashing files: sha512 in large reads (hashlib releases the GIL, so threads hash in
parallel)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1024 * 1024


def file_digest(path: Path, *, limit: int | None = None) -> tuple[int, str]:
    """The size and sha512 hex digest of the regular file `path` (:class:`OSError` for
    anything else); stops reading past `limit` bytes (the size then says it is too big)."""
    hasher = hashlib.sha512()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    # Non-blocking: opening a FIFO (planted where a file is expected) would wait forever.
    with open(
        os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb", buffering=0
    ) as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            hasher.update(view[:count])
            size += count
            if limit is not None and size > limit:
                break
    return size, hasher.hexdigest()


def matches(path: Path, size: int, digest: str) -> bool:
    """Whether the file at `path` is exactly these bytes (size checked first, cheaply)."""
    try:
        if path.stat().st_size != size:
            return False
        return file_digest(path, limit=size) == (size, digest)
    except OSError:
        return False
