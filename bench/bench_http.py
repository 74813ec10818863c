"""The cost of gateway.server's header-limited protocol on the cached-302 path, side by side.

    .venv/bin/python bench/bench_http.py [--rounds 6] [--duration 5] [--connections 32]

Each app is served twice by uvicorn (uvloop, httptools, ``log_config=None``,
``access_log=False``, the gateway's other server options): with uvicorn's stock
``HttpToolsProtocol`` and with ``gateway.server.http_protocol()``. Every server
process is pinned to core 0 (``taskset -c 0``); the load is
``taskset -c 1 wrk -t1 -c32 -d5s --latency URL``, run against the two protocols in
turn (the order alternating) for several rounds, so both see the same machine;
every round starts fresh server processes.
The apps: a Starlette route answering a constant 302, and the gateway answering
``GET /sha512/<digest>`` for an imported public file with a 302 from its index
cache. Prints the medians of req/s, p50 and p99 per protocol and the ratios
ours/stock (req/s: the median of the per-round ratios). Needs wrk (``apt-get
install wrk``) and two cores.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROTOCOLS = ("stock", "ours")
APPS = ("constant", "gateway")
DIGEST_FILE = "digest.txt"


@dataclass(frozen=True)
class Run:
    """One wrk run."""

    requests_per_second: float
    p50: float  # seconds
    p99: float


# The server side (a child process): `--serve PROTOCOL APP`.


def serve(protocol: str, app_name: str, port: int, data_dir: Path) -> None:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from gateway.cli import SERVER_OPTIONS
    from gateway.server import http_protocol

    app = constant_app() if app_name == "constant" else gateway_app(data_dir)
    http = HttpToolsProtocol if protocol == "stock" else http_protocol()
    options: dict[str, Any] = {**SERVER_OPTIONS, "http": http, "loop": "uvloop"}
    uvicorn.run(app, host="127.0.0.1", port=port, **options)


def constant_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def redirect(request: Any) -> Response:
        return Response(status_code=302, headers={"Location": "https://example.com/blob"})

    return Starlette(routes=[Route("/sha512/{digest}", redirect)])


def gateway_app(data_dir: Path) -> Any:
    from gateway.app import create_app
    from indexer.stores import Regions
    from tests.conftest import make_local_store, settings_for

    regions = Regions([make_local_store(data_dir / "local")])
    settings = settings_for(data_dir / "data", embedded_indexer=False, index_cache_seconds=3600)
    return create_app(settings, regions)


def import_public_file(data_dir: Path) -> str:
    from indexer.importer import import_file
    from indexer.stores import Regions
    from tests.conftest import make_local_store

    path = data_dir / "upload.bin"
    path.write_bytes(os.urandom(4096))
    regions = Regions([make_local_store(data_dir / "local")])
    imported = import_file(regions, path, visibility="public", message="bench", author="bench")
    return imported.digest


# The load side.


@contextmanager
def server(protocol: str, app: str, port: int, data_dir: Path) -> Iterator[str]:
    command = [
        "taskset", "-c", "0", sys.executable, __file__,
        "--serve", protocol, app, "--port", str(port), "--data-dir", str(data_dir),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_for_302(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_302(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {process.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/sha512/" + "0" * 128)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise SystemExit(f"the server on port {port} did not start")


def check_302(url: str) -> None:
    host, port = url.removeprefix("http://").split(":", 1)
    port, path = port.split("/", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", "/" + path)
    status = connection.getresponse().status
    connection.close()
    if status != 302:
        raise SystemExit(f"{url} answered {status}, not 302")


def wrk(url: str, duration: int, connections: int) -> Run:
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url,
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    if "Non-2xx or 3xx" in output or "Socket errors" in output:
        raise SystemExit(f"wrk saw errors:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Run(rate, _percentile(output, "50"), _percentile(output, "99"))


def _percentile(output: str, percent: str) -> float:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no {percent}% latency in wrk's output:\n{output}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


def measure(data_dir: Path, digest: str, args: argparse.Namespace) -> dict[Any, list[Run]]:
    """Every round starts fresh servers: a process's own luck (addresses, hash seeds) is
    worth a few per cent, so it must not stay with one protocol."""
    from tests.conftest import free_port

    runs: dict[Any, list[Run]] = {(app, protocol): [] for app in APPS for protocol in PROTOCOLS}
    for round_number in range(args.rounds):
        order = PROTOCOLS if round_number % 2 == 0 else PROTOCOLS[::-1]
        for app in APPS:
            for protocol in order:
                with server(protocol, app, free_port(), data_dir) as url:
                    url += f"/sha512/{digest}"
                    check_302(url)
                    wrk(url, 1, args.connections)  # warm-up
                    run = wrk(url, args.duration, args.connections)
                runs[app, protocol].append(run)
                print(
                    f"round {round_number + 1}/{args.rounds} {app:8} {protocol:5}"
                    f" {run.requests_per_second:8.0f} req/s  p50 {run.p50 * 1e3:.3f} ms"
                    f"  p99 {run.p99 * 1e3:.3f} ms",
                    file=sys.stderr,
                )
    return runs


def report(runs: dict[Any, list[Run]]) -> None:
    print(f"{'app':10} {'protocol':12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for app in APPS:
        medians = {}
        for protocol in PROTOCOLS:
            these = runs[app, protocol]
            medians[protocol] = [
                statistics.median(run.requests_per_second for run in these),
                statistics.median(run.p50 for run in these),
                statistics.median(run.p99 for run in these),
            ]
            rate, p50, p99 = medians[protocol]
            print(f"{app:10} {protocol:12} {rate:10.0f} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f}")
        ratios = [
            ours.requests_per_second / stock.requests_per_second
            for ours, stock in zip(runs[app, "ours"], runs[app, "stock"], strict=True)
        ]
        p50_ratio = medians["ours"][1] / medians["stock"][1]
        p99_ratio = medians["ours"][2] / medians["stock"][2]
        rounds = " ".join(f"{ratio:.3f}" for ratio in ratios)
        print(
            f"{app:10} {'ours/stock':12} {statistics.median(ratios):10.3f}"
            f" {p50_ratio:8.3f} {p99_ratio:8.3f}   (req/s per round: {rounds})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", nargs=2, metavar=("PROTOCOL", "APP"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve, port=args.port, data_dir=args.data_dir)
        return 0
    if shutil.which("wrk") is None or (os.cpu_count() or 1) < 2:
        print("needs wrk (apt-get install wrk) and two cores", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        digest = import_public_file(data_dir)
        print(f"python {sys.version.split()[0]}; GET /sha512/{digest[:16]}…", file=sys.stderr)
        report(measure(data_dir, digest, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
