"""sha512 digests: what a valid one looks like, and streaming hashing of files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

ALGORITHM = "sha512"

# fullmatch, not `$`: the legacy regex ended in `$`, which also accepts a trailing newline.
_DIGEST = re.compile(r"[0-9a-f]{128}")

CHUNK_SIZE = 1024 * 1024


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
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    while True:
        count = stream.readinto(view)  # type: ignore[attr-defined]
        if not count:
            break
        hasher.update(view[:count])
        size += count
    return Hashed(hasher.hexdigest(), size)
