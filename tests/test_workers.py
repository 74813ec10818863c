"""``tooltool-gateway --workers N``: one bound socket, N worker processes, one stop.

Each worker builds its own app from the settings, which is all uvicorn's
supervisor sends it (the header-limited protocol class cannot be pickled).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from uvicorn.config import STARTUP_FAILURE

from gateway.cli import WorkerConfig, worker_app
from gateway.settings import ServerSettings, Settings
from indexer.config import StoreSettings
from tests.conftest import free_port
from tests.test_configuration import run

STARTED = re.compile(r"Started server process \[(\d+)\]")


def _wait_for_workers(log: Path, url: str, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if log.read_text().count("Application startup complete") >= count:
            with urllib.request.urlopen(f"{url}/__lbheartbeat__", timeout=5) as answer:
                assert answer.status == 200
            return
        time.sleep(0.1)
    pytest.fail(f"{count} workers did not start:\n{log.read_text()}")


def _heartbeats_counted(url: str) -> float:
    with urllib.request.urlopen(f"{url}/__metrics__", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tooltool_http_requests_total" and sample.labels == {
                "method": "GET",
                "route": "/__lbheartbeat__",
                "status": "200",
            }:
                return sample.value
    return 0.0


def _assert_metrics_count_every_worker(url: str) -> None:
    """Whichever worker answers a scrape, it counts the requests every worker answered
    (each publishes its numbers every second: a scrape may be a little behind)."""
    answered_by = set()  # generated request ids start with their process's prefix
    count = 1  # the heartbeat that saw the workers started
    while len(answered_by) < 2 or count < 20:  # a connection each: the workers share them
        assert count < 500, "one worker answered every request"
        with urllib.request.urlopen(f"{url}/__lbheartbeat__", timeout=5) as answer:
            answered_by.add(answer.headers["X-Request-Id"][:16])
        count += 1
    deadline = time.monotonic() + 20
    seen: list[float] = []
    while seen[-6:] != [count] * 6:
        assert time.monotonic() < deadline, seen
        seen.append(_heartbeats_counted(url))
        time.sleep(0.1)


def test_two_workers_serve_one_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gateway.log"
    environ = {
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "TOOLTOOL_LOG_FORMAT": "text",
        "TOOLTOOL_EMBEDDED_INDEXER": "false",
        "PORT": str(port),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--workers", "2"],
            env={**os.environ, **environ},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_workers(log, f"http://127.0.0.1:{port}", 2, process)
        workers = {int(pid) for pid in STARTED.findall(log.read_text())}
        assert len(workers) == 2
        assert process.pid not in workers
        _assert_metrics_count_every_worker(f"http://127.0.0.1:{port}")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the gateway"
    assert "Traceback" not in log.read_text()


def test_a_worker_config_travels_as_its_settings(tmp_path: Path) -> None:
    settings = Settings(
        stores=StoreSettings(data_dir=tmp_path),
        server=ServerSettings(max_header_line=2048, max_header_bytes=4096, workers=3),
    )
    # As uvicorn sends it to a worker it spawns (bytes of its own making).
    config = pickle.loads(pickle.dumps(WorkerConfig(settings)))  # noqa: S301
    assert config.settings == settings
    assert config.workers == 3
    assert config.factory is True
    assert (config.http.max_line, config.http.max_headers) == (2048, 4096)


def test_a_worker_that_cannot_build_its_app_stops_with_the_start_up_failure_code(
    tmp_path: Path,
) -> None:
    # The data directory is checked once before the workers start; here it is gone.
    settings = Settings(stores=StoreSettings(data_dir=tmp_path / "missing" / "data"))
    (tmp_path / "missing").write_text("a file where a directory should be")
    with pytest.raises(SystemExit) as stopped:
        worker_app(settings)
    assert stopped.value.code == STARTUP_FAILURE


def test_one_worker_is_the_default(tmp_path: Path) -> None:
    result = run("gateway.cli", {"TOOLTOOL_DATA_DIR": str(tmp_path)}, "--help")
    assert result.returncode == 0
    assert "--workers" in result.stdout
    assert Settings.from_environ({}).server.workers == 1
