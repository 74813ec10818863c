"""Whole local-store blobs: the bytes and headers FileResponse sent, whether each read
comes from the page cache in the event loop or from a worker thread."""

from __future__ import annotations

import errno
import os
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway import blob_reads
from gateway.blob_reads import CHUNK, read_chunk
from tests.conftest import LiveServer, free_port
from tests.gateway.conftest import Gateway, random_bytes

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


@pytest.fixture(params=["page cache", "threads"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of reading: RWF_NOWAIT first, or (a kernel without it) threads only."""
    if request.param == "threads":
        monkeypatch.setattr(blob_reads, "_NOWAIT", None)
    elif blob_reads._NOWAIT is None:
        pytest.skip("this platform has no RWF_NOWAIT")
    return str(request.param)


@pytest.mark.parametrize("size", SIZES)
def test_a_whole_blob_is_its_bytes(gateway: Gateway, reads: str, size: int) -> None:
    data = random_bytes(size)
    client = gateway.client()
    location = client.get(f"/sha512/{gateway.add(data)}").headers["location"]
    response = client.get(location)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(size)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["etag"]
    head = client.head(location)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(size)
    if reads == "page cache":
        assert blob_reads._NOWAIT is not None  # the flag worked: no fallback happened


def test_over_real_http(gateway: Gateway, reads: str, live_server: Any) -> None:
    data = random_bytes(2 * CHUNK + 7)
    digest = gateway.add(data)
    server: LiveServer = live_server(gateway.app(), free_port())
    location = gateway.client().get(f"/sha512/{digest}").headers["location"]
    path = location.split("://", 1)[-1].split("/", 1)[-1]
    with urllib.request.urlopen(f"{server.url}/{path}", timeout=10) as response:
        assert response.read() == data


def test_uncached_bytes_are_read_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)

    def not_cached(*args: object) -> int:
        raise BlockingIOError(errno.EAGAIN, "would block")

    monkeypatch.setattr(os, "preadv", not_cached)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert anyio.run(read_chunk, fd, 10, 50) == b"x" * 50
        assert anyio.run(read_chunk, fd, 100, 0) == b""
        assert blob_reads._NOWAIT is not None  # still tried for the next read
    finally:
        os.close(fd)


def test_a_kernel_without_the_flag_falls_back_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"y" * 10)
    monkeypatch.setattr(blob_reads, "_NOWAIT", 8)

    def unsupported(*args: object) -> int:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "preadv", unsupported)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert anyio.run(read_chunk, fd, 0, 10) == b"y" * 10
        assert blob_reads._NOWAIT is None
    finally:
        os.close(fd)
