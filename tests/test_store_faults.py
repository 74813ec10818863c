"""The S3 store stopped, killed, paused, slow, hung or answering 5xx, under a live gateway.

Every fault is made for real on a SeaweedFS of this module's own (SIGTERM,
SIGKILL, SIGSTOP/SIGCONT, started again on the same ports and data) or by a
proxy in front of it (tests/fault_proxy.py: slow, 5xx, hung). For each, over
uvicorn with the fast path, many requests at once while the store is out:

- what needs a store read is a 503 problem with ``Retry-After``, within the
  store's timeouts (the client's own timeout bounds every request);
- decisions cached before the fault (302, 403, 404) keep their answers;
- ``/__heartbeat__`` is 503; ``POST /upload`` is 503 and writes nothing;
- once the store is back, everything recovers without restarting the
  gateway, and a second wave of requests finds no worker wedged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from indexer.config import open_regions
from indexer.importer import import_file
from indexer.schema import schema_errors
from indexer.stores import Regions, Store, StoreUnavailable
from tests.conftest import LiveServer, SeaweedFS, SeaweedProcess, free_port, make_system
from tests.fault_proxy import FaultProxy
from tests.gateway.auth_helpers import basic, clients_file_entries
from tests.gateway.test_download import assert_problem
from tests.system import System, Uploaded

# A request waits at most about connect + read (1 s and 2 s, one attempt) on the store; the
# client's bound is far above it, and fails the test instead of hanging it.
STORE_TIMEOUTS = {"S3_CONNECT_TIMEOUT": "1", "S3_READ_TIMEOUT": "2", "S3_MAX_ATTEMPTS": "1"}
CLIENT_BOUND = 15.0
CACHE_SECONDS = 120  # longer than any fault here: cached decisions must outlast it
WAVE = 80  # requests sent at once during a fault, and again after it
RECOVERY_BOUND = 30.0

REPORT: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def weed_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    """This module's own SeaweedFS: its faults disturb no other test."""
    process = SeaweedProcess(tmp_path_factory.mktemp("fault-weed"))
    try:
        yield process
    finally:
        process.stop()
        if REPORT:
            print("\nrequests served during faults:", json.dumps(REPORT, indent=1))


@pytest.fixture
def weed(weed_process: SeaweedProcess) -> Iterator[SeaweedProcess]:
    """The module's SeaweedFS, running again after the test whatever the test did to it."""
    yield weed_process
    if weed_process.is_running:
        weed_process.resume()
    else:
        weed_process.start()


@dataclass
class Fault:
    """One way the store fails, made and undone for real."""

    name: str
    make: Callable[[SeaweedProcess, FaultProxy], None]
    undo: Callable[[SeaweedProcess, FaultProxy], None]
    through_proxy: bool = False


FAULTS = [
    Fault("sigterm", lambda weed, proxy: weed.stop(), lambda weed, proxy: weed.start()),
    Fault("sigkill", lambda weed, proxy: weed.kill(), lambda weed, proxy: weed.start()),
    Fault("sigstop", lambda weed, proxy: weed.pause(), lambda weed, proxy: weed.resume()),
    Fault(
        "5xx",
        lambda weed, proxy: proxy.set("error"),
        lambda weed, proxy: proxy.set("pass"),
        through_proxy=True,
    ),
    Fault(
        "slow",  # each chunk 4 s late: past the 2 s read timeout
        lambda weed, proxy: proxy.set("slow", delay=4),
        lambda weed, proxy: proxy.set("pass"),
        through_proxy=True,
    ),
    Fault(
        "hung",
        lambda weed, proxy: proxy.set("hang"),
        lambda weed, proxy: proxy.set("pass"),
        through_proxy=True,
    ),
]


@dataclass
class Deployment:
    """A live gateway over one bucket of the module's SeaweedFS (maybe through a proxy)."""

    url: str
    regions: Regions  # straight to SeaweedFS, for the test's own reads and writes
    tmp_path: Path

    def add(self, visibility: str, name: str) -> str:
        path = self.tmp_path / name
        path.write_bytes(os.urandom(2000))
        imported = import_file(self.regions, path, visibility=visibility, message="m", author="a")
        return imported.digest

    def keys(self) -> set[str]:
        return {info.key for info in self.regions.index.list("")}


@pytest.fixture
def deploy(weed: SeaweedProcess, tmp_path: Path) -> Iterator[Callable[[str], Deployment]]:
    """Start a gateway whose store is SeaweedFS itself, or the proxy in front of it."""
    with contextlib.ExitStack() as stack:

        def start(endpoint: str) -> Deployment:
            bucket = weed.seaweedfs.new_bucket()
            (tmp_path / "clients.json").write_text(json.dumps(clients_file_entries()))
            environ = SeaweedFS(endpoint).environ(("us-east-1", bucket)) | STORE_TIMEOUTS
            environ |= {
                "TOOLTOOL_INDEX_CACHE_SECONDS": str(CACHE_SECONDS),
                "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS": str(CACHE_SECONDS),
                "TOOLTOOL_JWT_SECRET": "s" * 32,
                "TOOLTOOL_CLIENTS_FILE": str(tmp_path / "clients.json"),
                # No indexer runs here (the files are imported): the heartbeat checks the store.
                "TOOLTOOL_HEARTBEAT_INDEXER_SECONDS": "0",
            }
            settings = Settings.from_environ(environ)
            app = create_app(settings, open_regions(settings.stores))
            server = stack.enter_context(LiveServer(app, free_port()))
            direct = weed.seaweedfs.environ(("us-east-1", bucket))
            regions = open_regions(Settings.from_environ(direct).stores, bulk=True)
            return Deployment(server.url, regions, tmp_path)

        yield start


@pytest.fixture
def proxy(weed: SeaweedProcess) -> Iterator[FaultProxy]:
    port = int(weed.seaweedfs.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port)) as running:
        yield running


def upload_body(name: str) -> bytes:
    digest = "ab" * 64
    files = {name: {"size": 10, "digest": digest, "algorithm": "sha512", "visibility": "public"}}
    return json.dumps({"message": "during the fault", "files": files}).encode()


class Wave:
    """Requests sent at once, their answers checked and counted by kind."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self.counts: Counter[str] = Counter()
        self.slowest: dict[str, float] = {}  # seconds, for the report (never asserted)

    def send(self, requests: list[tuple[str, Callable[[httpx.Client], httpx.Response]]]) -> None:
        """Send every request (32 at a time); each kind's answers, counted as kind:status."""
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda item: (item[0], item[1](self._client)), requests))
        for kind, response in answers:
            self.counts[f"{kind}:{response.status_code}"] += 1
            seconds = response.elapsed.total_seconds()
            self.slowest[kind] = round(max(seconds, self.slowest.get(kind, 0.0)), 2)
            if response.status_code == 503:
                assert_problem(response, 503)
                if kind != "heartbeat":
                    assert response.headers["retry-after"].isdigit(), kind


def requests_for(
    files: dict[str, str], tokens: dict[str, str], *, count: int, only_cached: bool = False
) -> list[tuple[str, Callable[[httpx.Client], httpx.Response]]]:
    """About `count` requests, of every kind in turn (`only_cached`: of the kinds whose
    answers a fault must not change, once they are cached)."""
    bearer = {"Authorization": f"Bearer {tokens['reader']}"}
    upload_headers = {
        "Authorization": f"Bearer {tokens['uploader']}",
        "Content-Type": "application/json",
    }
    kinds: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "cached-public": lambda c: c.get(f"/sha512/{files['public']}"),
        "cached-internal-anonymous": lambda c: c.get(f"/sha512/{files['internal']}"),
        "cached-internal-bearer": lambda c: c.get(f"/sha512/{files['internal']}", headers=bearer),
        "cached-unknown": lambda c: c.get(f"/sha512/{files['unknown']}"),
        "uncached": lambda c: c.get(f"/sha512/{files['uncached']}"),
        "cached-search": lambda c: c.get("/file", params={"q": files["uncached"][:16]}),
        "heartbeat": lambda c: c.get("/__heartbeat__"),
        "upload": lambda c: c.post("/upload", content=upload_body("x.bin"), headers=upload_headers),
    }
    if only_cached:
        kinds = {kind: call for kind, call in kinds.items() if kind.startswith("cached-")}
    per_kind = max(1, count // len(kinds))
    return [(kind, call) for _ in range(per_kind) for kind, call in kinds.items()]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_a_store_fault_is_503_cached_answers_stay_and_the_gateway_recovers(
    fault: Fault,
    weed: SeaweedProcess,
    proxy: FaultProxy,
    deploy: Callable[[str], Deployment],
) -> None:
    deployment = deploy(proxy.url if fault.through_proxy else weed.seaweedfs.endpoint)
    files = {
        "public": deployment.add("public", "public.bin"),
        "internal": deployment.add("internal", "internal.bin"),
        "uncached": deployment.add("public", "uncached.bin"),
        "unknown": "0" * 128,
    }
    with httpx.Client(
        base_url=deployment.url, timeout=CLIENT_BOUND, follow_redirects=False
    ) as client:
        tokens = {
            client_id: client.post("/token", headers={"Authorization": basic(client_id)}).json()[
                "token"
            ]
            for client_id in ("reader", "uploader")
        }
        before = Wave(client)
        before.send(requests_for(files, tokens, count=5, only_cached=True))  # warms the caches
        assert before.counts == {
            "cached-public:302": 1,
            "cached-internal-anonymous:403": 1,
            "cached-internal-bearer:302": 1,
            "cached-unknown:404": 1,
            "cached-search:200": 1,
        }
        keys = deployment.keys()

        fault.make(weed, proxy)
        try:
            during = Wave(client)
            during.send(requests_for(files, tokens, count=WAVE))
        finally:
            fault.undo(weed, proxy)
        per_kind = WAVE // 8
        assert during.counts == {
            "cached-public:302": per_kind,
            "cached-internal-anonymous:403": per_kind,
            "cached-internal-bearer:302": per_kind,
            "cached-unknown:404": per_kind,
            "uncached:503": per_kind,
            "cached-search:200": per_kind,
            "heartbeat:503": per_kind,
            "upload:503": per_kind,
        }

        wait_for_recovery(client, files["uncached"])
        assert deployment.keys() == keys  # the uploads refused wrote nothing
        after = Wave(client)
        after.send(requests_for(files, tokens, count=WAVE))
    assert after.counts["uncached:302"] == after.counts["heartbeat:200"] == per_kind, after.counts
    assert after.counts["upload:200"] == per_kind, after.counts
    REPORT[fault.name] = {
        "during": dict(during.counts),
        "slowest during": during.slowest,
        "after": dict(after.counts),
    }


def wait_for_recovery(client: httpx.Client, digest: str) -> None:
    """Poll until a store read and the heartbeat succeed again (bounded)."""
    deadline = time.monotonic() + RECOVERY_BOUND
    while (
        client.get(f"/sha512/{digest}").status_code != 302
        or client.get("/__heartbeat__").status_code != 200
    ):
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.2)


def check_index_objects(regions: Regions) -> None:
    for info in regions.index.list("index/"):
        raw, _ = regions.index.get(info.key)
        assert schema_errors(json.loads(raw)) == [], info.key


# -- the indexer --------------------------------------------------------------

INDEXER_FAULTS = [fault for fault in FAULTS if fault.name in ("sigkill", "sigstop")]
PASS_FILES = 10


def indexer(
    environ: dict[str, str], *arguments: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[str]:
    """``tooltool-indexer`` in a process of its own, as cron starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", *arguments],
        env={**os.environ, **environ},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def takes_writes(store: Store) -> bool:
    try:
        store.put("probe", b"")
    except StoreUnavailable:
        return False
    store.delete("probe")
    return True


def indexer_system(weed: SeaweedProcess, tmp_path: Path) -> tuple[dict[str, str], System]:
    """The indexer's settings over a new bucket (short timeouts and lease), and a gateway
    over it to upload through."""
    bucket = weed.seaweedfs.new_bucket()
    environ = weed.seaweedfs.environ(("us-east-1", bucket)) | STORE_TIMEOUTS
    environ |= {"TOOLTOOL_LEASE_SECONDS": "3", "TOOLTOOL_RENDER_SITE": "false"}
    store = open_regions(Settings.from_environ(environ).stores).index
    return environ, make_system(store, tmp_path)


def poll(condition: Callable[[], bool], what: str, *, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("fault", INDEXER_FAULTS, ids=[fault.name for fault in INDEXER_FAULTS])
def test_an_indexer_pass_the_store_stops_exits_non_zero_and_the_next_loses_nothing(
    fault: Fault, weed: SeaweedProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    environ, system = indexer_system(weed, tmp_path)
    store = system.regions.index
    uploads = [
        Uploaded(f"tool-{number}.bin", os.urandom(64 * 1024), "public")
        for number in range(PASS_FILES)
    ]
    system.upload(uploads)

    def indexed() -> int:
        return sum(1 for _ in store.list("index/"))

    first = indexer(environ, "run")
    try:
        poll(lambda: indexed() > 0 or first.poll() is not None, "the pass did not start")
        first.send_signal(signal.SIGSTOP)  # mid-pass, while the store is made to fail
        done = indexed()
        fault.make(weed, proxy)
        first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert 0 < done < PASS_FILES, "the fault came too late to stop the pass midway"
    assert first.returncode == 4, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("StoreUnavailable: us-east-1: store unavailable: ")
    fault.undo(weed, proxy)
    # SeaweedFS started again answers 500 to writes until its volumes have registered
    # (a second or two): a pass meeting that exits 4 as above. The next pass is the one
    # after it takes writes again, as cron starts it, with the default timeouts.
    poll(lambda: takes_writes(store), "the store took no write again")
    settings = {name: value for name, value in environ.items() if name not in STORE_TIMEOUTS}
    for _ in range(3):  # a few volumes may still answer 500 for a moment: cron runs again
        second = indexer(settings, "run", "--wait", "10")
        stdout, stderr = second.communicate(timeout=120)
        if second.returncode != 4:
            break
        assert stderr.splitlines()[-1].startswith("StoreUnavailable: "), stderr
    assert second.returncode == 0, stderr
    assert json.loads(stdout)["failures"] == 0
    for upload in uploads:
        assert system.download(upload.digest) == (302, upload.data)
    check_index_objects(system.regions)
    assert [info.key for info in store.list("intake/pending/")] == []
    assert [info.key for info in store.list("staging/")] == []
    assert system.indexer.failures() == []
    found = system.client.get("/file", params={"q": "tool-"}).json()["result"]
    assert sorted(entry["digest"] for entry in found) == sorted(u.digest for u in uploads)


def test_watch_outlives_a_stopped_store_and_finishes_the_work_once_it_is_back(
    weed: SeaweedProcess, tmp_path: Path
) -> None:
    environ, system = indexer_system(weed, tmp_path)
    before, after = (Uploaded(f"{name}.bin", os.urandom(1000), "public") for name in "ab")
    system.upload([before])
    log = tmp_path / "watch.log"
    with log.open("w") as stream:
        watch = indexer(environ, "watch", "--interval", "0.5", stderr=stream)
    try:
        poll(lambda: system.redirect(before.digest).status_code == 302, "no pass indexed it")
        weed.pause()
        try:
            poll(lambda: "indexer pass failed" in log.read_text(), "no pass failed")
            assert watch.poll() is None, "watch exited with the store stopped"
        finally:
            weed.resume()
        system.upload([after])  # once the store answers: watch indexes it, unrestarted
        poll(lambda: system.redirect(after.digest).status_code == 302, "watch did not recover")
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.communicate(timeout=30)
    assert watch.returncode == 0
    stderr = log.read_text()
    assert "Traceback" not in stderr
    failed = [line for line in stderr.splitlines() if "indexer pass failed" in line]
    assert all("StoreUnavailable" in line for line in failed), stderr
    assert system.download(after.digest) == (302, after.data)
