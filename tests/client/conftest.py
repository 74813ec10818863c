"""Fixtures of the client's tests.

A live gateway for any command: `live_gateway` (parametrised: the embedded local
store, SeaweedFS) and `start_live_gateway` (the same, with settings of one's
own), each with an authentication file per client of
``tests/gateway/auth_helpers.CLIENTS``; `cli`, the command line run in process;
`workdir`, an empty current folder.

For ``fetch``, ``list``, ``validate`` and ``purge`` (test_fetch*.py, test_cache.py,
test_purge.py, test_list_validate.py): `fetch_gateway`, one live gateway per store
for all of them, behind a recording proxy, holding a few imported files (helpers in
fetch_helpers.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from indexer.cli import main as indexer_main
from indexer.config import open_regions
from tests.client.fetch_helpers import Blob, FetchGateway
from tests.client.recording_proxy import RecordingProxy
from tests.conftest import LiveServer, SeaweedFS, free_port
from tests.gateway.auth_helpers import CLIENTS, clients_file_entries, hawk
from tests.test_end_to_end import request
from tooltool_client.cli import main as tooltool_main


@dataclass
class LiveGateway:
    """A gateway served over real HTTP at `url` (ending with ``/``) on `store`."""

    url: str
    store: str
    environ: dict[str, str]  # its settings: what ``tooltool-indexer import`` needs too
    auth_files: dict[str, Path]  # an authentication file ({"clientId", "accessToken"}) per client

    def auth(self, client_id: str) -> str:
        return str(self.auth_files[client_id])

    def import_file(self, path: Path, visibility: str) -> str:
        """`path` put in with the operator import; its digest."""
        assert indexer_main(["import", "--visibility", visibility, str(path)], self.environ) == 0
        return hashlib.sha512(path.read_bytes()).hexdigest()

    def download(self, digest: str, client_id: str = "reader", timeout: float = 20) -> bytes:
        """The file's bytes once the gateway serves them (an upload waits for an indexer
        pass); fails after `timeout` seconds."""
        url = f"{self.url}sha512/{digest}"
        deadline = time.monotonic() + timeout
        while True:
            status, headers, body = request(url, headers={"Authorization": hawk(client_id, url)})
            if status == 302:
                with urllib.request.urlopen(headers["location"], timeout=10) as response:
                    data: bytes = response.read()
                    return data
            assert time.monotonic() < deadline, (status, body)
            time.sleep(0.1)

    def status_of(self, digest: str, client_id: str | None = None) -> int:
        """What ``GET /sha512/<digest>`` answers `client_id` (None: anonymous)."""
        url = f"{self.url}sha512/{digest}"
        headers = {"Authorization": hawk(client_id, url)} if client_id else {}
        return request(url, headers=headers)[0]


GatewayStarter = Callable[..., LiveGateway]


@pytest.fixture
def start_live_gateway(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    live_server: Callable[[Any, int], LiveServer],
) -> GatewayStarter:
    """``start(store, port=None, **settings)``: a live gateway on "local" or "s3", indexing
    in process every second, its clients those of CLIENTS; `settings` are added to its
    environment."""
    count = [0]

    def start(store: str, *, port: int | None = None, **settings: str) -> LiveGateway:
        count[0] += 1
        folder = tmp_path / f"gateway-{count[0]}"
        folder.mkdir()
        if store == "local":
            environ = {"TOOLTOOL_DATA_DIR": str(folder / "data")}
        else:
            seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
            environ = seaweedfs.environ(("us-east-1", seaweedfs.new_bucket()))
            environ["TOOLTOOL_EMBEDDED_INDEXER"] = "true"
        clients = folder / "clients.json"
        clients.write_text(json.dumps(clients_file_entries()))
        environ |= {
            "TOOLTOOL_CLIENTS_FILE": str(clients),
            "TOOLTOOL_JWT_SECRET": "x" * 32,
            "TOOLTOOL_INDEXER_INTERVAL": "1",
            **settings,
        }
        auth_files = {}
        for client_id, client in CLIENTS.items():
            auth_files[client_id] = folder / f"{client_id}.auth.json"
            auth_files[client_id].write_text(
                json.dumps({"clientId": client_id, "accessToken": client["accessToken"]})
            )
        config = Settings.from_environ(environ)
        app = create_app(config, open_regions(config.stores))
        server = live_server(app, port or free_port())
        return LiveGateway(server.url + "/", store, environ, auth_files)

    return start


@pytest.fixture(params=["local", "s3"])
def live_gateway(request: pytest.FixtureRequest, start_live_gateway: GatewayStarter) -> LiveGateway:
    """A live gateway on each store in turn."""
    return start_live_gateway(request.param)


@dataclass
class CliRun:
    """What one run of the command line did."""

    code: int
    stdout: str
    stderr: str
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.stderr.splitlines()


def cli(*argv: str, environ: Mapping[str, str] | None = None) -> CliRun:
    """``tooltool argv…`` in process, in the current folder, in `environ` (default: empty,
    so no credentials come from the test's own environment)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = tooltool_main(list(argv), environ=environ or {}, stdout=stdout, stderr=stderr)
    return CliRun(code, stdout.getvalue(), stderr.getvalue())


def cli_args(gateway: LiveGateway, client_id: str | None, *argv: str) -> Sequence[str]:
    """`argv` with the gateway's ``--url`` and, for a client, its authentication file."""
    auth = ["--authentication-file", gateway.auth(client_id)] if client_id else []
    return ["--url", gateway.url, *auth, *argv]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, the current one for the test."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


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
