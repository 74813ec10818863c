"""sha512 digests: what a valid one looks like, and streaming hashing of files."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import re
import threading
from dataclasses import dataclass
from typing import BinaryIO

ALGORITHM = "sha512"

# fullmatch, not `$`: the legacy regex ended in `$`, which also accepts a trailing newline.
_DIGEST = re.compile(r"[0-9a-f]{128}")

CHUNK_SIZE = 1024 * 1024
_READ_AHEAD = 4  # chunks buffered ahead of the hasher


def is_valid_digest(value: str) -> bool:
    """True when `value` is exactly 128 lowercase hex characters."""
    return len(value) == 128 and _DIGEST.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Hashed:
    """The sha512 digest and size of a stream of bytes."""

    digest: str
    size: int


def hash_stream(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Hashed:
    """Hash a binary stream to its end without holding it in memory."""
    hasher = hashlib.sha512()
    size = 0
    while chunk := stream.read(chunk_size):
        hasher.update(chunk)
        size += len(chunk)
    return Hashed(hasher.hexdigest(), size)


def hash_stream_read_ahead(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Hashed:
    """Like :func:`hash_stream`, reading the next chunks in a thread while hashing this one.

    Both socket reads and sha512 updates of large buffers release the GIL, so
    a network stream is fetched and hashed on two cores at once.
    """
    chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_READ_AHEAD)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                chunk = stream.read(chunk_size)
                chunks.put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the hashing thread, which raises it
            chunks.put(exc)

    reader = threading.Thread(target=read, name="hash-read-ahead", daemon=True)
    reader.start()
    hasher = hashlib.sha512()
    size = 0
    try:
        while True:
            chunk = chunks.get()
            if isinstance(chunk, BaseException):
                raise chunk
            if not chunk:
                break
            hasher.update(chunk)
            size += len(chunk)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()
            reader.join(timeout=0.01)
    return Hashed(hasher.hexdigest(), size)
