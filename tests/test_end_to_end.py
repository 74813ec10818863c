"""The runbook's three curl checks over real HTTP, on both stores, and the console scripts."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from indexer.cli import main as indexer_main
from indexer.config import open_regions
from tests.conftest import LiveServer, SeaweedFS, free_port
from tests.gateway.auth_helpers import CLIENTS, clients_file_entries, hawk
from tests.gateway.test_download import FORBIDDEN_BODY, INVALID_DIGEST_BODY


@dataclass
class Deployment:
    url: str
    public: bytes
    public_digest: str
    internal: bytes
    internal_digest: str


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed (as curl without -L)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def import_files(environ: dict[str, str], tmp_path: Path, capsys) -> tuple[bytes, str, bytes, str]:
    public = os.urandom(5000)
    internal = os.urandom(100)
    (tmp_path / "public.bin").write_bytes(public)
    (tmp_path / "internal.bin").write_bytes(internal)
    assert (
        indexer_main(["import", "--visibility", "public", str(tmp_path / "public.bin")], environ)
        == 0
    )
    assert (
        indexer_main(
            ["import", "--visibility", "internal", str(tmp_path / "internal.bin")], environ
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    return public, lines[0].split()[0], internal, lines[1].split()[0]


@pytest.fixture(params=["local", "s3"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    live_server: Callable[[Any, int], LiveServer],
    capsys: pytest.CaptureFixture[str],
) -> Deployment:
    if request.param == "local":
        environ = {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}
    else:
        seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
        environ = seaweedfs.environ(("us-east-1", seaweedfs.new_bucket()))
        environ["TOOLTOOL_EMBEDDED_INDEXER"] = "true"  # one gateway, indexing in process
    environ["TOOLTOOL_INDEXER_INTERVAL"] = "1"
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    environ |= {"TOOLTOOL_CLIENTS_FILE": str(clients), "TOOLTOOL_JWT_SECRET": "x" * 32}
    public, public_digest, internal, internal_digest = import_files(environ, tmp_path, capsys)
    settings = Settings.from_environ(environ)
    server = live_server(create_app(settings, open_regions(settings.stores)), free_port())
    return Deployment(server.url, public, public_digest, internal, internal_digest)


def test_known_public_digest_redirects(deployment: Deployment) -> None:
    status, headers, body = request(f"{deployment.url}/sha512/{deployment.public_digest}")
    assert status == 302
    assert b"You should be redirected automatically to target URL" in body
    location = headers["location"]
    assert urlsplit(location).port is not None
    with urllib.request.urlopen(location, timeout=10) as response:
        assert response.read() == deployment.public


def test_head_redirects_too(deployment: Deployment) -> None:
    status, headers, body = request(f"{deployment.url}/sha512/{deployment.public_digest}", "HEAD")
    assert status == 302
    assert headers["location"]
    assert body == b""


def test_known_internal_digest_is_forbidden(deployment: Deployment) -> None:
    status, headers, body = request(f"{deployment.url}/sha512/{deployment.internal_digest}")
    assert status == 403
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == FORBIDDEN_BODY


def test_invalid_digest(deployment: Deployment) -> None:
    status, headers, body = request(f"{deployment.url}/sha512/invalid")
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == INVALID_DIGEST_BODY


def test_gateway_console_script_serves_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    environ = {**os.environ, "TOOLTOOL_DATA_DIR": str(tmp_path / "data")}
    for name in ("S3_REGIONS", "TOOLTOOL_ROOT_PATH"):
        environ.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, _ = request(f"http://127.0.0.1:{port}/__lbheartbeat__")
                break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200
        status, _, body = request(f"http://127.0.0.1:{port}/sha512/invalid")
        assert (status, json.loads(body)) == (400, INVALID_DIGEST_BODY)
        status, _, body = request(f"http://127.0.0.1:{port}/__heartbeat__")
        assert status == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    # mozlog JSON lines, one summary per request
    summaries = [json.loads(line) for line in output.splitlines() if '"request.summary"' in line]
    assert {entry["Fields"]["path"] for entry in summaries} >= {"/sha512/invalid"}


def test_gateway_refuses_to_start_on_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli"],
        env={**os.environ, "S3_REGIONS": "broken", "TOOLTOOL_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 4
    assert result.stderr.startswith("SettingsError: S3_REGIONS: ")
    assert "Traceback" not in result.stderr


def test_heartbeat_over_http(deployment: Deployment) -> None:
    status, _, body = request(f"{deployment.url}/__heartbeat__")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_unknown_route_over_http(deployment: Deployment) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{deployment.url}/nothing/here", timeout=10)
    assert caught.value.code == 404
    assert caught.value.headers["content-type"] == "application/json"
    caught.value.close()


def test_legacy_client_with_hawk_credentials(deployment: Deployment) -> None:
    """What tooltool.py does with an authentication file holding clientId and accessToken."""
    url = f"{deployment.url}/sha512/{deployment.internal_digest}"
    status, headers, _ = request(url, headers={"Authorization": hawk("reader", url)})
    assert status == 302
    # The Authorization header is not forwarded on the redirect.
    with urllib.request.urlopen(headers["location"], timeout=10) as response:
        assert response.read() == deployment.internal


def test_token_with_curl_then_bearer_downloads(deployment: Deployment, tmp_path: Path) -> None:
    """The README's curl recipe, and tooltool.py with a bare token in its authentication file."""
    answer = subprocess.run(
        [
            "curl",
            "-sSf",
            "-u",
            f"reader:{CLIENTS['reader']['accessToken']}",
            "-X",
            "POST",
            f"{deployment.url}/token",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    token = json.loads(answer.stdout)["token"]
    target = tmp_path / "internal.bin"
    subprocess.run(
        [
            "curl",
            "-sSfL",
            "-H",
            f"Authorization: Bearer {token}",
            "-o",
            str(target),
            f"{deployment.url}/sha512/{deployment.internal_digest}",
        ],
        check=True,
        timeout=30,
    )
    assert target.read_bytes() == deployment.internal
    status, _, body = request(
        f"{deployment.url}/sha512/{deployment.internal_digest}",
        headers={"Authorization": "Bearer " + token[:-2] + "xx"},
    )
    assert status == 401
    assert json.loads(body)["detail"].startswith("Invalid credentials: ")


def test_hawk_through_taskcluster_over_http(
    tmp_path: Path, live_server: Callable[[Any, int], LiveServer], capsys
) -> None:
    from tests.taskcluster_double import TaskclusterDouble

    double = TaskclusterDouble()
    double.add_client("reader", CLIENTS["reader"]["accessToken"], CLIENTS["reader"]["scopes"])
    tc = live_server(double.app(), free_port())
    environ = {
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "TASKCLUSTER_ROOT_URL": tc.url,
    }
    _, _, internal, digest = import_files(environ, tmp_path, capsys)
    settings = Settings.from_environ(environ)
    server = live_server(create_app(settings, open_regions(settings.stores)), free_port())
    url = f"{server.url}/sha512/{digest}"
    status, headers, _ = request(url, headers={"Authorization": hawk("reader", url)})
    assert status == 302
    with urllib.request.urlopen(headers["location"], timeout=10) as response:
        assert response.read() == internal
    assert double.requests == 1


def legacy_put(put_url: str, data: bytes) -> int:
    """The legacy client's PUT: http.client, host and port split from the netloc (443 when
    there is no colon), only Content-Type and Content-Length."""
    parts = urlsplit(put_url)
    host, port = parts.netloc.split(":") if ":" in parts.netloc else (parts.netloc, 443)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "PUT",
            f"{parts.path}?{parts.query}",
            body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def post_upload(url: str, data: bytes, visibility: str) -> str:
    """POST a batch of one file, tool.tar.xz, to `url` as the legacy client does; its
    put_url."""
    entry = {
        "size": len(data),
        "digest": hashlib.sha512(data).hexdigest(),
        "algorithm": "sha512",
        "visibility": visibility,
    }
    body = json.dumps({"message": "toolchain", "files": {"tool.tar.xz": entry}}).encode()
    status, _, answer = request(
        url,
        "POST",
        body=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": hawk(
                "uploader", url, "POST", body=body, content_type="application/json"
            ),
        },
    )
    assert status == 200, answer
    return json.loads(answer)["result"]["files"]["tool.tar.xz"]["put_url"]


@pytest.mark.parametrize("visibility", ["public", "internal"])
def test_legacy_upload_is_downloadable_within_seconds(
    deployment: Deployment, visibility: str
) -> None:
    data = os.urandom(70_000)
    digest = hashlib.sha512(data).hexdigest()
    put_url = post_upload(f"{deployment.url}/upload", data, visibility)
    assert legacy_put(put_url, data) == 200
    complete = f"{deployment.url}/upload/complete/sha512/{digest}"
    status, _, _ = request(complete, headers={"Authorization": hawk("uploader", complete)})
    assert status == 202
    started = time.monotonic()
    download = f"{deployment.url}/sha512/{digest}"
    while True:
        status, headers, _ = request(download, headers={"Authorization": hawk("reader", download)})
        if status == 302 or time.monotonic() - started > 20:
            break
        time.sleep(0.1)
    assert status == 302
    with urllib.request.urlopen(headers["location"], timeout=10) as response:
        assert response.read() == data


def test_an_upload_reaches_every_local_region_over_http(
    tmp_path: Path, live_server: Callable[[Any, int], LiveServer]
) -> None:
    """TOOLTOOL_LOCAL_REGIONS=east,west on the embedded default: an upload to west is
    copied to east by the gateway's own indexer loop, and each region serves its copy."""
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    environ = {
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "TOOLTOOL_LOCAL_REGIONS": "east,west",
        "TOOLTOOL_INDEXER_INTERVAL": "1",
        "TOOLTOOL_CLIENTS_FILE": str(clients),
        "TOOLTOOL_JWT_SECRET": "x" * 32,
    }
    settings = Settings.from_environ(environ)
    server = live_server(create_app(settings, open_regions(settings.stores)), free_port())
    data = os.urandom(70_000)
    digest = hashlib.sha512(data).hexdigest()
    put_url = post_upload(f"{server.url}/upload?region=west", data, "public")
    assert urlsplit(put_url).path.startswith("/__store__/west/staging/")
    assert legacy_put(put_url, data) == 200
    complete = f"{server.url}/upload/complete/sha512/{digest}"
    assert request(complete, headers={"Authorization": hawk("uploader", complete)})[0] == 202
    started = time.monotonic()
    while True:
        status, _, answer = request(f"{server.url}/file/sha512/{digest}")
        if status == 200 and json.loads(answer)["instances"] == ["east", "west"]:
            break
        assert time.monotonic() - started < 20, answer
        time.sleep(0.1)
    for region in ("east", "west"):
        status, headers, _ = request(f"{server.url}/sha512/{digest}?region={region}")
        assert status == 302
        location = headers["location"]
        assert urlsplit(location).path == f"/__store__/{region}/sha512/{digest}"
        with urllib.request.urlopen(location, timeout=10) as response:
            assert response.read() == data
        copy = tmp_path / "data" / region / "sha512" / digest
        assert copy.read_bytes() == data
