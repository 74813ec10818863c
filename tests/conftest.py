"""Shared fixtures: a real SeaweedFS S3 server, live gateway servers, stores of both kinds."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from starlette.testclient import TestClient

from deploy.seaweedfs import PORT_NAMES, SeaweedFSError, free_ports, stop_seaweedfs
from deploy.seaweedfs import start_seaweedfs as start_weed
from gateway.app import create_app
from gateway.cli import server_options
from gateway.metrics import GatewayMetrics
from gateway.settings import AuthSettings, ServerSettings, Settings
from indexer.config import StoreSettings, open_regions
from indexer.job import Indexer
from indexer.local_store import LocalStore
from indexer.s3_store import S3Store, Timeouts, make_client
from indexer.signing import UrlSigner
from indexer.stores import Regions, StoreUnavailable
from tests.gateway.auth_helpers import clients_file_entries
from tests.log_scan import LogRecorder
from tests.system import System

ACCESS_KEY = "tooltool-test-access"
SECRET_KEY = "tooltool-test-secret-key"
SIGNING_KEY = b"test-signing-key-0123456789abcdef"


_RECORDER = LogRecorder()
_BUCKETS_TO_DELETE: list[tuple[SeaweedFS, str]] = []


@pytest.fixture(autouse=True)
def _delete_buckets() -> Iterator[None]:
    """Delete the buckets a test made, when it ends (best effort: its server may be gone)."""
    yield
    while _BUCKETS_TO_DELETE:
        seaweedfs, bucket = _BUCKETS_TO_DELETE.pop()
        with contextlib.suppress(Exception):
            seaweedfs.delete_bucket(bucket)


@pytest.fixture(scope="session")
def log_recorder() -> LogRecorder:
    """Every record of the run, formatted as production formats it."""
    return _RECORDER


@pytest.fixture(autouse=True)
def _record_logs() -> Iterator[None]:
    """Record every test's logs; undo whatever logging set-up the test did (the CLIs
    configure the root logger with the stream of the test's own capture)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    _RECORDER.attach()
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan runs last, over what every other test logged."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_log_scan.py"))


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class SeaweedFS:
    """A running SeaweedFS with signature checking on."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    _count: list[int] = field(default_factory=lambda: [0])

    def client(self, region: str = "us-east-1") -> Any:
        return make_client(
            region,
            endpoint_url=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
        )

    def new_bucket(self) -> str:
        """A new bucket, deleted with its objects when the test ends (each bucket holds
        volumes of its own, and a SeaweedFS has only so many)."""
        self._count[0] += 1
        bucket = f"test-{os.getpid()}-{self._count[0]}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=bucket)
        _BUCKETS_TO_DELETE.append((self, bucket))
        return bucket

    def delete_bucket(self, bucket: str) -> None:
        """Empty `bucket` (objects and unfinished multipart uploads) and delete it."""
        client = make_client(
            "us-east-1",
            endpoint_url=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            timeouts=Timeouts(connect=1, read=10, attempts=1),
        )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        if client.get_bucket_versioning(Bucket=bucket).get("Status"):
            # What a versioned bucket keeps behind its delete markers, and the markers.
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                versions = [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
                keys = [{"Key": item["Key"], "VersionId": item["VersionId"]} for item in versions]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)

    def environ(self, *regions: tuple[str, str]) -> dict[str, str]:
        """Gateway/indexer settings for these (region, bucket) pairs."""
        return {
            "S3_REGIONS": ";".join(f"{region}:{bucket}" for region, bucket in regions),
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGIONS_ACCESS_KEY_ID": self.access_key,
            "S3_REGIONS_SECRET_ACCESS_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    # A port taken between choosing and binding makes weed exit: try again.
    for attempt in range(3):
        root = tmp_path_factory.mktemp(f"seaweedfs-{attempt}")
        started = start_seaweedfs(root)
        if started is not None:
            process, output, endpoint = started
            break
    else:
        pytest.fail("SeaweedFS did not start in three attempts")
    try:
        yield SeaweedFS(endpoint)
    finally:
        stop_seaweedfs(process, output)


def start_seaweedfs(
    root: Path, ports: dict[str, int] | None = None
) -> tuple[subprocess.Popen[bytes], Any, str] | None:
    """A SeaweedFS with the tests' credentials (:func:`deploy.seaweedfs.start_seaweedfs`)."""
    try:
        started = start_weed(root, access_key=ACCESS_KEY, secret_key=SECRET_KEY, ports=ports)
    except SeaweedFSError as exc:
        pytest.fail(str(exc))
    if started is None:
        print(f"SeaweedFS failed to start:\n{(root / 'weed.out').read_text()[-3000:]}")
    return started


class SeaweedProcess:
    """A SeaweedFS of its own, which a test stops (SIGTERM), kills (SIGKILL), pauses
    (SIGSTOP) and resumes (SIGCONT), and starts again on the same ports and data."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        self._running: tuple[subprocess.Popen[bytes], Any] | None = None
        self.start()
        self.seaweedfs = SeaweedFS(f"http://127.0.0.1:{self._ports['s3.port']}")

    @property
    def is_running(self) -> bool:
        return self._running is not None

    @property
    def pid(self) -> int:
        assert self._running is not None, "SeaweedFS is not running"
        return self._running[0].pid

    def start(self) -> None:
        """Start it (again) on its ports and data."""
        assert self._running is None, "SeaweedFS is running"
        started = start_seaweedfs(self._root, self._ports)
        if started is None:
            pytest.fail("SeaweedFS did not start")
        self._running = started[:2]

    def pause(self) -> None:
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after a wait); idempotent."""
        if self._running is not None:
            stop_seaweedfs(*self._running)
            self._running = None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine stops it."""
        assert self._running is not None, "SeaweedFS is not running"
        process, output = self._running
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        output.close()
        self._running = None


class LiveServer:
    """An ASGI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app: Any, port: int, metrics: GatewayMetrics | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        # As tooltool-gateway serves: the header-limited protocol and the same options.
        options = server_options(ServerSettings(), metrics)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def live_server() -> Iterator[Callable[[Any, int], LiveServer]]:
    """Start apps on loopback ports; every one is stopped at the end of the test."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, port: int) -> LiveServer:
            return stack.enter_context(LiveServer(app, port))

        yield start


def settings_for(data_dir: Path, **changes: Any) -> Settings:
    """Gateway settings on the embedded default, keeping its files in `data_dir`."""
    return Settings(stores=StoreSettings(data_dir=data_dir), **changes)


def make_local_store(
    root: Path, *, public_url: str | None = None, region: str = "local", **signer: Any
) -> LocalStore:
    return LocalStore(
        root, signer=UrlSigner(SIGNING_KEY, **signer), region=region, public_url=public_url
    )


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A local store whose signed URLs are root-relative (for in-process tests)."""
    return make_local_store(tmp_path / "data")


@pytest.fixture
def s3_store(seaweedfs: SeaweedFS) -> S3Store:
    return signing_itself(S3Store(seaweedfs.client(), seaweedfs.new_bucket(), region="us-east-1"))


def signing_itself(store: S3Store) -> S3Store:
    """`store`, past its first presigned URL of each kind: those are botocore's (checked
    against the store's own signer, indexer.sigv4), every later one the store's own."""
    store.presign_get("sha512/first", expires_in=60)
    store.presign_put("staging/first", expires_in=60)
    store.presign_put("staging/first", expires_in=60, content_length=1)
    assert store._presigner.verified == {
        ("GET",),
        ("PUT", "content-type"),
        ("PUT", "content-type", "content-length"),
    }
    return store


def unreachable_s3_store(bucket: str = "bucket-a", region: str = "us-east-1") -> S3Store:
    """An S3 store whose endpoint refuses connections, with no retries."""
    client = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    return S3Store(client, bucket, region=region)


class UnreachableStore:
    """Stands in for a local store that cannot be reached: every call raises
    StoreUnavailable, as an S3 store's calls do when its endpoint refuses connections."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def unreachable(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise StoreUnavailable(self.region, "unreachable in this test")

        return unreachable


def unreachable(store: Any) -> Any:
    """`store`'s region, unreachable: its bucket behind an endpoint that refuses
    connections, or a stand-in for a local store."""
    if isinstance(store, S3Store):
        return unreachable_s3_store(store.bucket, store.region)
    return UnreachableStore(store.region)


@pytest.fixture(params=["local", "s3"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A gateway and an indexer over one store of each kind, clients from a file."""
    if request.param == "local":
        store: Any = make_local_store(tmp_path / "data")
    else:
        store = request.getfixturevalue("s3_store")
    return make_system(store, tmp_path)


@pytest.fixture(params=["local", "s3"])
def two_regions(request: pytest.FixtureRequest, tmp_path: Path) -> Regions:
    """Two regions of one kind, as configured: ``TOOLTOOL_LOCAL_REGIONS=east,west``, or
    two SeaweedFS buckets in ``S3_REGIONS``."""
    if request.param == "local":
        environ = {
            "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
            "TOOLTOOL_LOCAL_REGIONS": "east,west",
        }
    else:
        seaweedfs = request.getfixturevalue("seaweedfs")
        environ = seaweedfs.environ(
            ("us-east-1", seaweedfs.new_bucket()), ("us-west-2", seaweedfs.new_bucket())
        )
    return open_regions(StoreSettings.from_environ(environ), bulk=True)


def clients_auth(tmp_path: Path) -> AuthSettings:
    """Authentication by the test clients (a clients file in `tmp_path`), tokens HS256."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    return AuthSettings(clients_file=clients, jwt_secret="s" * 32)


def make_system(store: Any, tmp_path: Path, **settings: Any) -> System:
    """A gateway (uncached, no embedded indexer) and an indexer over `store` (or over
    every store of a :class:`Regions`), clients from a file; `settings` change the
    gateway's."""
    regions = store if isinstance(store, Regions) else Regions([store])
    defaults: dict[str, Any] = {
        "auth": clients_auth(tmp_path),
        "embedded_indexer": False,
        "index_cache_seconds": 0,
        "index_negative_cache_seconds": 0,
        "heartbeat_recheck_seconds": 0,
    }
    app = create_app(settings_for(tmp_path / "data", **(defaults | settings)), regions)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    return System(client, regions, Indexer(regions))
