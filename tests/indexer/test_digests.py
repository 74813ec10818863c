"""Digest validation and streaming hashes."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from indexer.digests import hash_stream, hash_stream_read_ahead, is_valid_digest


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a" * 128, True),
        ("0123456789abcdef" * 8, True),
        ("A" * 128, False),
        ("a" * 127, False),
        ("a" * 129, False),
        ("a" * 128 + "\n", False),
        ("g" * 128, False),
        ("", False),
    ],
)
def test_is_valid_digest(value: str, valid: bool) -> None:
    assert is_valid_digest(value) is valid


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024, 3 * 1024 * 1024 + 5])
@pytest.mark.parametrize("hasher", [hash_stream, hash_stream_read_ahead])
def test_hashes_match_hashlib(size: int, hasher) -> None:
    data = os.urandom(size)
    hashed = hasher(io.BytesIO(data))
    assert hashed.digest == hashlib.sha512(data).hexdigest()
    assert hashed.size == size


class Failing(io.RawIOBase):
    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 3:
            raise OSError("connection reset")
        return b"x" * size


def test_read_errors_reach_the_caller() -> None:
    before = threading.active_count()
    with pytest.raises(OSError, match="connection reset"):
        hash_stream_read_ahead(Failing())  # type: ignore[arg-type]
    assert threading.active_count() == before
