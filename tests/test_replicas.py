"""Two gateway processes over one data directory: what one changes, the other shows within
the documented bound (TOOLTOOL_INDEX_CACHE_SECONDS), downloads and searches alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.cli import main as indexer_main
from tests.conftest import free_port
from tests.gateway.auth_helpers import clients_file_entries, hawk
from tests.test_end_to_end import request

BOUND = 1  # TOOLTOOL_INDEX_CACHE_SECONDS of both processes


@contextmanager
def gateway_process(environ: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                request(f"{url}/__lbheartbeat__")
                break
            except OSError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_flip_and_a_batch_reach_the_other_process(tmp_path: Path, capsys) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "TOOLTOOL_"))},
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "TOOLTOOL_CLIENTS_FILE": str(clients),
        "TOOLTOOL_JWT_SECRET": "j" * 32,
        "TOOLTOOL_INDEX_CACHE_SECONDS": str(BOUND),
    }
    (tmp_path / "tool.bin").write_bytes(os.urandom(300))
    assert (
        indexer_main(["import", "--visibility", "public", str(tmp_path / "tool.bin")], environ) == 0
    )
    digest = capsys.readouterr().out.split()[0]
    with gateway_process(environ) as one, gateway_process(environ) as other:
        assert request(f"{other}/sha512/{digest}")[0] == 302  # cached there now
        assert search(other, "/upload?q=fresh%20batch") == []  # the catalog too

        body = json.dumps([{"op": "set_visibility", "visibility": "internal"}]).encode()
        path = f"/file/sha512/{digest}"
        headers = {
            "Content-Type": "application/json",
            "Authorization": hawk(
                "admin", one + path, "PATCH", body=body, content_type="application/json"
            ),
        }
        assert request(one + path, "PATCH", headers, body)[0] == 200
        assert request(f"{one}/sha512/{digest}")[0] == 403  # at once where it was made
        upload = json.dumps(
            {
                "message": "fresh batch",
                "files": {
                    "new.bin": {
                        "size": 3,
                        "digest": "a" * 128,
                        "algorithm": "sha512",
                        "visibility": "public",
                    }
                },
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": hawk(
                "uploader", f"{one}/upload", "POST", body=upload, content_type="application/json"
            ),
        }
        assert request(f"{one}/upload", "POST", headers, upload)[0] == 200

        deadline = time.monotonic() + 30  # the bound is 1 s; the margin is for a slow machine
        while request(f"{other}/sha512/{digest}")[0] == 302:
            assert time.monotonic() < deadline, "the other process kept serving the file"
            time.sleep(0.1)
        assert request(f"{other}/sha512/{digest}")[0] == 403
        while not search(other, "/upload?q=fresh%20batch"):
            assert time.monotonic() < deadline, "the other process never listed the batch"
            time.sleep(0.1)


def search(url: str, path: str) -> list[dict]:
    status, _, body = request(url + path, headers={"Authorization": hawk("reader", url + path)})
    assert status == 200, body
    return json.loads(body)["result"]
