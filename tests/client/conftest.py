"""Fixtures of the client's tests.

For ``fetch``, ``list``, ``validate`` and ``purge`` (test_fetch*.py, test_cache.py,
test_purge.py): `fetch_gateway`, a live gateway on either store (behind a
recording proxy) holding a few imported files; `run_tooltool`, the command line
run in process with tiny retry waits; `write_manifest`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from indexer.cli import main as indexer_main
from indexer.config import open_regions
from tests.client.hostile_server import HostileServer
from tests.client.recording_proxy import RecordingProxy
from tests.conftest import LiveServer, SeaweedFS, free_port
from tests.gateway.auth_helpers import clients_file_entries
from tooltool_client.cli import main as tooltool_main

# Retries after a hundredth of a second, and a server silent for 2 s has failed.
FAST = {"TOOLTOOL_RETRY_SECONDS": "0.01", "TOOLTOOL_READ_TIMEOUT": "2"}


@dataclass(frozen=True)
class Blob:
    """A file's name and bytes, as a manifest lists it."""

    name: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha512(self.data).hexdigest()

    def record(self, **extra: Any) -> dict[str, Any]:
        return {
            "filename": self.name,
            "size": len(self.data),
            "algorithm": "sha512",
            "digest": self.digest,
            **extra,
        }


@dataclass
class FetchGateway:
    """A live gateway holding `files` (public) and `internal`, reached through `proxy`."""

    store: str
    proxy: RecordingProxy
    files: dict[str, Blob]
    internal: Blob
    direct_url: str

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def public(self) -> list[Blob]:
        return list(self.files.values())


@dataclass
class Outcome:
    """What a run of the command line did."""

    code: int
    out: str
    err: str
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.err.splitlines()


def write_manifest(
    folder: Path, records: Iterable[Blob | Mapping[str, Any]], name: str = "manifest.tt"
) -> Path:
    path = folder / name
    entries = [record.record() if isinstance(record, Blob) else record for record in records]
    path.write_text(json.dumps(entries, indent=2))
    return path


def run_tooltool(args: Sequence[str], environ: Mapping[str, str] | None = None) -> Outcome:
    """The command line in process, in the current folder, with `FAST` waits."""
    out, err = io.StringIO(), io.StringIO()
    code = tooltool_main(list(args), environ={**FAST, **(environ or {})}, stdout=out, stderr=err)
    return Outcome(code, out.getvalue(), err.getvalue())


def tooltool_process(
    args: Sequence[str],
    cwd: Path,
    *,
    wrapper: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """The installed ``tooltool`` console script, started in `cwd` (by `wrapper`, if any),
    with `FAST` waits (and `environ`)."""
    script = shutil.which("tooltool", path=str(Path(sys.executable).parent))
    assert script is not None, "the tooltool console script is not installed"
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TASKCLUSTER_", "TOOLTOOL_"))
    }
    return subprocess.Popen(
        [*wrapper, script, *args],
        cwd=cwd,
        env={**inherited, **FAST, **(environ or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """`process`, killed at the end if it still runs."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for(condition: Callable[[], object], process: subprocess.Popen[str], what: str) -> None:
    """Until `condition` holds, while `process` runs (30 s at most)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {what} in 30 s"
        time.sleep(0.02)


@contextlib.contextmanager
def fetching(args: Sequence[str], cwd: Path, part: Path) -> Iterator[subprocess.Popen[str]]:
    """The console script running `args` in `cwd`, once it has written to `part` (the part
    file of a download under way); killed at the end if it still runs."""
    with reaped(tooltool_process(args, cwd)) as process:
        wait_for(lambda: part.exists() and part.stat().st_size > 0, process, "part file")
        yield process


@dataclass
class SlowFetch:
    """A fetch of `blob`, served slowly by `server`, under way in `process`."""

    server: HostileServer
    process: subprocess.Popen[str]
    blob: Blob
    part: Path
    command: list[str]


@contextlib.contextmanager
def slow_fetch(
    folder: Path, *, cache: Path | None = None, delay: float = 0.02
) -> Iterator[SlowFetch]:
    """The console script fetching a 2 MiB file into `folder` (through `cache`, if given),
    from a server sending 64 KiB every `delay` seconds, once bytes are in its part file."""
    blob = Blob("big.bin", os.urandom(2 * 1024 * 1024))
    write_manifest(folder, [blob])
    part = (cache or folder) / f".tooltool-{blob.digest}.part"
    with HostileServer({blob.digest: blob.data}) as server:
        server.plan, server.delay = ["slow"], delay
        command = ["-v", "--url", server.url, *(["-c", str(cache)] if cache else []), "fetch"]
        with fetching(command, folder, part) as process:
            yield SlowFetch(server, process, blob, part, command)


def sha512_of(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def assert_fetched(folder: Path, blobs: Sequence[Blob], *, only: bool = False) -> None:
    """Each blob's file in `folder` holds its bytes; with `only`, nothing else is there but
    the manifest (no part, lock or temporary file left)."""
    for blob in blobs:
        assert sha512_of(folder / blob.name) == blob.digest, blob.name
    if only:
        expected = sorted({blob.name for blob in blobs} | {"manifest.tt"})
        assert sorted(path.name for path in folder.iterdir()) == expected


def _import(environ: dict[str, str], visibility: str, paths: Sequence[Path]) -> None:
    command = ["import", "--visibility", visibility, *map(str, paths)]
    assert indexer_main(command, environ) == 0


@pytest.fixture(scope="package", params=["local", "s3"])
def _fetch_gateway_shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FetchGateway]:
    """One live gateway per store for all the client's tests (nothing they do changes it)."""
    root = tmp_path_factory.mktemp(f"fetch-gateway-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "local":
            environ = {"TOOLTOOL_DATA_DIR": str(root / "data")}
        else:
            seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
            bucket = f"client-{os.getpid()}-{secrets.token_hex(3)}"
            seaweedfs.client().create_bucket(Bucket=bucket)
            stack.callback(seaweedfs.delete_bucket, bucket)
            environ = seaweedfs.environ(("us-east-1", bucket))
        clients = root / "clients.json"
        clients.write_text(json.dumps(clients_file_entries()))
        environ |= {"TOOLTOOL_CLIENTS_FILE": str(clients), "TOOLTOOL_JWT_SECRET": "x" * 32}
        files = {
            blob.name: blob
            for blob in (
                Blob("small.bin", os.urandom(5000)),
                Blob("medium.bin", os.urandom(300_000)),
                Blob("empty.bin", b""),
            )
        }
        internal = Blob("internal.bin", os.urandom(100))
        for blob in (*files.values(), internal):
            (root / blob.name).write_bytes(blob.data)
        _import(environ, "public", [root / name for name in files])
        _import(environ, "internal", [root / internal.name])
        settings = Settings.from_environ(environ)
        app = create_app(settings, open_regions(settings.stores))
        server = stack.enter_context(LiveServer(app, free_port()))
        proxy = stack.enter_context(RecordingProxy(server.url))
        yield FetchGateway(request.param, proxy, files, internal, server.url + "/")


@pytest.fixture
def fetch_gateway(_fetch_gateway_shared: FetchGateway) -> FetchGateway:
    """A live gateway (embedded local store, or SeaweedFS) behind a `RecordingProxy`,
    holding `small.bin`, `medium.bin`, `empty.bin` (public) and `internal.bin`."""
    _fetch_gateway_shared.proxy.reset()
    return _fetch_gateway_shared


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, the current one for the test."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
