"""Faults of the stores: a hung S3 server, a full disk, a store lost midway through an upload.

Regressions (review findings 7 and 8): with SeaweedFS stopped by SIGSTOP an
uncached download and ``/file?q=`` answered 503 only after 90 s, and
``/__heartbeat__`` after 241 s; a PUT to the local store on a full disk
answered 500 "unexpected error", and the heartbeat said 200 with 0 bytes free.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from indexer.config import StoreSettings, open_regions
from indexer.importer import import_file
from indexer.local_store import LocalStore
from indexer.stores import Regions, StoreUnavailable
from tests.conftest import (
    SeaweedFS,
    make_local_store,
    make_system,
    settings_for,
    start_seaweedfs,
    stop_seaweedfs,
)
from tests.gateway.auth_helpers import clients_file_entries
from tests.gateway.test_download import assert_problem
from tests.system import System, Uploaded

# -- a hung S3 server --------------------------------------------------------


@pytest.fixture
def own_seaweedfs(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], SeaweedFS]]:
    """A SeaweedFS of this test's own, to stop and resume without disturbing the others."""
    started = start_seaweedfs(tmp_path / "weed")
    if started is None:
        pytest.fail("SeaweedFS did not start")
    process, output, endpoint = started
    try:
        yield process, SeaweedFS(endpoint)
    finally:
        stop_seaweedfs(process, output)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_hung_store_is_a_prompt_503_and_the_gateway_recovers(
    own_seaweedfs: tuple[subprocess.Popen[bytes], SeaweedFS], tmp_path: Path
) -> None:
    process, seaweedfs = own_seaweedfs
    environ = seaweedfs.environ(("us-east-1", seaweedfs.new_bucket()))
    environ |= {
        "S3_CONNECT_TIMEOUT": "1",
        "S3_READ_TIMEOUT": "1",
        "S3_MAX_ATTEMPTS": "1",
        "TOOLTOOL_HEARTBEAT_TIMEOUT": "1",
        "TOOLTOOL_HEARTBEAT_INDEXER_SECONDS": "0",  # no indexer here: the store alone
        "TOOLTOOL_INDEX_CACHE_SECONDS": "0",
        "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS": "0",
        "TOOLTOOL_JWT_SECRET": "s" * 32,
        "TOOLTOOL_CLIENTS_FILE": str(tmp_path / "clients.json"),
    }
    (tmp_path / "clients.json").write_text(json.dumps(clients_file_entries()))
    settings = Settings.from_environ(environ)
    regions = open_regions(settings.stores)
    path = tmp_path / "tool.bin"
    path.write_bytes(os.urandom(1000))
    digest = import_file(regions, path, visibility="public", message="m", author="a").digest
    client = TestClient(
        create_app(settings, regions), follow_redirects=False, raise_server_exceptions=False
    )
    assert client.get(f"/sha512/{digest}").status_code == 302
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        download, took = timed(lambda: client.get(f"/sha512/{digest}"))
        assert_problem(download, 503)
        assert download.headers["retry-after"]
        assert took < 10, took  # 1 s read timeout, 1 attempt (was 90 s)
        search, took = timed(lambda: client.get("/file", params={"q": digest[:16]}))
        assert_problem(search, 503)
        assert took < 10, took
        heartbeat, took = timed(lambda: client.get("/__heartbeat__"))
        # "error" when it failed fast, the store having just been found unreachable
        checks = assert_problem(heartbeat, 503)["checks"]
        assert checks["store:us-east-1"] in ("timeout", "error")
        assert took < 3, took  # its own budget (was 241 s)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while client.get(f"/sha512/{digest}").status_code != 302:
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.2)
    while client.get("/__heartbeat__").status_code != 200:
        assert time.monotonic() < deadline, "the heartbeat did not recover"
        time.sleep(0.2)


def test_store_calls_have_short_timeouts_by_default() -> None:
    settings = StoreSettings.from_environ({"S3_REGIONS": "us-east-1:bucket-a"})
    [store] = open_regions(settings)
    config = store.client.meta.config  # type: ignore[attr-defined]
    assert (config.connect_timeout, config.read_timeout) == (3.0, 5.0)
    assert config.retries["total_max_attempts"] == 2
    assert store.copy_client is store.client  # type: ignore[attr-defined]
    [bulk] = open_regions(settings, bulk=True)
    # The indexer's copies wait for whole blobs to be written; its other calls do not.
    assert bulk.client.meta.config.read_timeout == 5.0  # type: ignore[attr-defined]
    assert bulk.copy_client.meta.config.read_timeout == 120.0  # type: ignore[attr-defined]


# -- a full disk --------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, really full when the test fills it."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def full_disk_system(root: Path, tmp_path: Path) -> System:
    store = make_local_store(root / "data")
    store.min_free_bytes = 1
    return make_system(store, tmp_path)


def fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as stream, contextlib.suppress(OSError):
        while True:
            stream.write(b"\0" * 65536)
            stream.flush()


def test_a_full_disk_is_507_and_leaves_nothing_behind(tiny_disk: Path, tmp_path: Path) -> None:
    system = full_disk_system(tiny_disk, tmp_path)
    upload = Uploaded("big.bin", os.urandom(300_000), "public")
    url = system.post([upload]).json()["result"]["files"]["big.bin"]["put_url"]
    fill(tiny_disk)
    store = system.regions.index
    assert isinstance(store, LocalStore)
    response = system.client.put(
        url, content=upload.data, headers={"Content-Type": "application/octet-stream"}
    )
    problem = assert_problem(response, 507)
    assert response.headers["retry-after"].isdigit()
    assert "no room" in problem["detail"]
    assert list(store.list("staging/")) == []
    assert os.listdir(store.root / ".tmp") == []
    # Writes of records fail the same way, whole or not at all.
    assert_problem(system.post([Uploaded("small.bin", b"small", "public")]), 507)
    heartbeat = assert_problem(system.client.get("/__heartbeat__"), 503)
    assert heartbeat["checks"] == {"store:local": "low-disk-space"}
    # Room again: the same PUT succeeds.
    (tiny_disk / "filler").unlink()
    assert system.put(url, upload.data) == 200


def test_disk_full_while_syncing_is_507(
    system: System, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where no tmpfs can be mounted: ENOSPC as fsync reports it (delayed allocation)."""
    if not isinstance(system.regions.index, LocalStore):
        pytest.skip("the local store's own disk")
    upload = Uploaded("a.bin", os.urandom(1000), "public")
    url = system.post([upload]).json()["result"]["files"]["a.bin"]["put_url"]

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    response = system.client.put(
        url, content=upload.data, headers={"Content-Type": "application/octet-stream"}
    )
    assert_problem(response, 507)
    assert_problem(system.post([Uploaded("b.bin", b"b", "public")]), 507)
    monkeypatch.undo()
    assert os.listdir(system.regions.index.root / ".tmp") == []
    assert system.put(url, upload.data) == 200


def test_the_heartbeat_fails_under_the_free_space_threshold(tmp_path: Path) -> None:
    probe = make_local_store(tmp_path / "data")
    free = probe.free_bytes()
    low = make_local_store(tmp_path / "data")
    low.min_free_bytes = free + 1024**4
    settings = settings_for(tmp_path / "data", embedded_indexer=False, heartbeat_recheck_seconds=0)
    client = TestClient(create_app(settings, Regions([low])), raise_server_exceptions=False)
    body = assert_problem(client.get("/__heartbeat__"), 503)
    assert body["checks"] == {"store:local": "low-disk-space"}
    assert str(tmp_path) not in json.dumps(body)
    low.min_free_bytes = 0
    assert client.get("/__heartbeat__").status_code == 200


def test_the_free_space_threshold_is_a_setting() -> None:
    assert StoreSettings.from_environ({}).min_free_bytes == 1024**3
    assert StoreSettings.from_environ({"TOOLTOOL_MIN_FREE_BYTES": "0"}).min_free_bytes == 0


class CountingClient:
    """A boto3 client whose every call finds the endpoint unreachable, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.meta = type("Meta", (), {"endpoint_url": "http://127.0.0.1:9"})()

    def head_object(self, **params: Any) -> Any:
        import botocore.exceptions

        self.calls += 1
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    def generate_presigned_url(self, *args: Any, **kwargs: Any) -> str:
        return "http://127.0.0.1:9/signed"


def test_requests_behind_an_unreachable_store_fail_fast_for_a_moment() -> None:
    """Under many concurrent requests a hung store cost each its own timeouts, queued
    behind one another (30 s at 200 at once); after one finds it unreachable, the next
    fail at once for a moment, then one tries again."""
    from indexer.s3_store import S3Store
    from indexer.stores import StoreUnavailable

    now = [100.0]
    client = CountingClient()
    store = S3Store(
        client, "bucket-a", region="us-east-1", pause_after_failure=3, clock=lambda: now[0]
    )
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            store.head("sha512/x")
    assert client.calls == 1
    assert store.presign_get("sha512/x", expires_in=60)  # signing needs no store
    now[0] += 3.5
    with pytest.raises(StoreUnavailable):
        store.head("sha512/x")
    assert client.calls == 2


def test_a_blob_that_cannot_be_read_is_a_503_not_an_empty_200(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FileResponse opens its file after the status line is sent: an unreadable blob
    (permissions, EIO) was a 200 with no body."""
    if not isinstance(system.regions.index, LocalStore):
        pytest.skip("the local store's own files")
    import gateway.blobs

    upload = Uploaded("a.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once(check=False)
    location = system.client.get(f"/sha512/{upload.digest}").headers["location"]

    def unreadable(path: Any) -> os.stat_result:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(gateway.blobs, "_readable_stat", unreadable)
    assert_problem(system.client.get(location), 503)


# -- a store lost in the middle of a request -----------------------------------


class FailingAt:
    """A store whose `at`-th write from now (a put) finds it unavailable; 0 for never."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.region = store.region
        self.at = 0

    def put(self, *args: Any, **kwargs: Any) -> Any:
        if self.at:
            self.at -= 1
            if self.at == 0:
                raise StoreUnavailable(self.region, "lost in this test")
        return self._store.put(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_upload_the_store_fails_midway_is_503_and_leaves_no_pending_record(
    system: System, tmp_path: Path
) -> None:
    """Pending records written before the failure held the uploader's quota for a day,
    for uploads it had no URL to make."""
    from indexer.intake import PENDING

    failing = FailingAt(system.regions.index)
    faulty = make_system(failing, tmp_path)
    files = [Uploaded(f"{name}.bin", os.urandom(100), "public") for name in "ab"]
    step = 0
    while True:
        step += 1
        failing.at = step
        response = faulty.post(files)
        failing.at = 0
        if response.status_code == 200:
            break
        assert_problem(response, 503)
        assert response.headers["retry-after"].isdigit()
        assert list(system.regions.index.list(PENDING)) == [], step
    assert step > 5, step  # the batch record, each pending record and the audit record failed
    data = {upload.name: upload.data for upload in files}
    for name, entry in response.json()["result"]["files"].items():
        # through the gateway over the store itself, which serves a local store's URLs
        assert system.put(entry["put_url"], data[name]) == 200
    system.indexer.run_once()
    for upload in files:
        assert system.download(upload.digest) == (302, upload.data)
    assert list(system.regions.index.list(PENDING)) == []
