"""Sentry reports with ``SENTRY_DSN``, and no secret in them.

A local HTTP server stands in for Sentry's ingest endpoint (the DSN
``http://<key>@127.0.0.1:<port>/1``); a real ``tooltool-gateway`` answers a
500 (a malformed index object) to a request carrying a Bearer token and a
signature in its query, and the envelope it sends must name the error and hold
neither.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.cli import main
from indexer.sentry import EventThrottle
from tests.conftest import free_port
from tests.gateway.auth_helpers import basic

SENTRY_KEY = "0123456789abcdef0123456789abcdef"
SIGNATURE = "deadbeefcafe0123456789signature"


class Ingest(http.server.ThreadingHTTPServer):
    """Sentry's envelope endpoint: keeps every body it is sent, uncompressed."""

    def __init__(self, port: int) -> None:
        self.envelopes: list[bytes] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", port), _IngestHandler)


class _IngestHandler(http.server.BaseHTTPRequestHandler):
    server: Ingest

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        self.server.envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            with urllib.request.urlopen(f"{url}/__lbheartbeat__", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the gateway did not start")


def test_a_500_reaches_sentry_without_a_secret(tmp_path: Path, ingest: Ingest) -> None:
    port = free_port()
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOOLTOOL_", "S3_"))},
        "TOOLTOOL_DATA_DIR": str(data),
        "TOOLTOOL_EMBEDDED_INDEXER": "false",
        "PORT": str(port),
        "SENTRY_DSN": f"http://{SENTRY_KEY}@127.0.0.1:{ingest.server_address[1]}/1",
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli"], env=environ, stdout=output, stderr=output
        )
    try:
        _wait_until_serving(url, process)
        [client] = json.loads((data / ".clients.json").read_text())
        access_token = client["accessToken"]
        request = urllib.request.Request(
            f"{url}/token",
            method="POST",
            headers={"Authorization": basic(client["clientId"], access_token)},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            token = json.loads(answer.read())["token"]
        digest = "ab" * 64
        broken = data / "index" / "sha512" / f"{digest}.json"
        broken.parent.mkdir(parents=True)
        broken.write_text('{"schema_version": 1, "digest": "nope"')
        download = urllib.request.Request(
            f"{url}/sha512/{digest}?signature={SIGNATURE}",
            headers={"Authorization": f"Bearer {token}", "Cookie": f"session={SIGNATURE}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(download, timeout=10)
        assert refused.value.code == 500
        refused.value.close()
        deadline = time.monotonic() + 20
        while not any(b"malformed" in body for body in ingest.envelopes):
            assert time.monotonic() < deadline, ingest.envelopes
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    sent = b"\n".join(ingest.envelopes).decode("utf-8", "replace")
    assert ingest.paths[0].startswith("/api/1/envelope/")
    assert "index/sha512/" in sent  # the error names the object set aside
    for secret in (token, token.split(".")[2], access_token, SIGNATURE, "Bearer "):
        assert secret not in sent, secret
    assert '"component"' in sent


def test_the_indexer_names_a_bad_dsn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "SENTRY_DSN": "ftp://key@host/1"}
    assert main(["run"], environ) == 4
    out, err = capsys.readouterr()
    assert err == (
        "SettingsError: SENTRY_DSN: expected a Sentry DSN (key as user, project id as path):"
        " Unsupported scheme 'ftp'\n"
    )
    assert not out


def test_events_of_one_kind_pass_once_a_minute_and_kinds_are_bounded() -> None:
    """A store down or a failing heartbeat makes the same event at every request:
    one passes per interval, others of other kinds still pass, memory is bounded."""
    now = [0.0]
    throttle = EventThrottle(interval=60, kinds=3, clock=lambda: now[0])
    down = {"logger": "gateway.errors", "logentry": {"message": "store unavailable: %s"}}
    assert [throttle.allows(down) for _ in range(100)] == [True] + [False] * 99
    crash = {"logger": "x", "exception": {"values": [{"type": "KeyError"}]}}
    assert throttle.allows(crash)
    assert not throttle.allows(crash)
    now[0] = 60.0
    assert throttle.allows(down)
    for number in range(10):
        assert throttle.allows({"logger": "x", "logentry": {"message": f"kind {number}"}})
    assert len(throttle._sent) == 3
    sent = throttle.sending(lambda event, hint: event)
    assert sent(down, None) is down  # forgotten among the kinds: passes again
    assert sent(down, None) is None
