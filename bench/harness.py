"""What bench/fastpath.py's rows share: server processes, wrk, SeaweedFS, a bounded client.

Servers run as child processes (a new session each, so a stuck one is stopped with its
workers), pinned with ``taskset``, their output in a log file; one is ready when
``/__lbheartbeat__`` answers 200 and its log says every worker finished start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
LOAD_CORE = "1"
BOTH_CORES = "0,1"
# The environment a server starts from: the caller's, without any setting of the
# gateway's, so only what a row configures applies.
_SETTING_PREFIXES = ("S3_", "TOOLTOOL_", "TASKCLUSTER_", "CLOUDFRONT_")
_SETTING_NAMES = ("HOST", "PORT", "WEB_CONCURRENCY", "DOWNLOAD_EXPIRES_IN", "UPLOAD_EXPIRES_IN")


class BenchError(Exception):
    """Something a row needs did not work: the row reports it instead of a figure."""


def failed(reason: str) -> dict[str, str]:
    """The table cells of a row that has no figures, and why."""
    return {"ratio": "failed", "note": reason[:300]}


def clean_environ(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without gateway settings, plus `settings`."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SETTING_PREFIXES) and name not in _SETTING_NAMES
    }
    return {**kept, **settings}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    """The machine and the versions the figures depend on, in one line."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for name in ("uvicorn", "starlette", "uvloop", "httptools"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except (ImportError, AttributeError):
            versions.append(f"{name} not installed")
    return f"{os.cpu_count()} cores ({model}), python {platform.python_version()}, " + ", ".join(
        versions
    )


# -- server processes ----------------------------------------------------------


@dataclass
class Server:
    """A running server process (and its workers)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time (user and system) used so far by the server and its workers."""
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(pid) for pid in children.read_text().split()]
        ticks = 0
        for pid in pids:
            with contextlib.suppress(OSError):  # a worker that just ended
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server's own process, KiB."""
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields


def pinned(command: Sequence[str], cores: str | None) -> list[str]:
    """`command` run on `cores` (``taskset -c``), or unpinned for None."""
    return ["taskset", "-c", cores, *command] if cores else list(command)


def gateway_command(port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "--port", str(port), *options]


def bare_command(port: int) -> list[str]:
    return [sys.executable, str(REPO / "bench" / "bare_app.py"), "--port", str(port)]


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    port: int,
    settings: Mapping[str, str],
    log: Path,
    cores: str | None = SERVER_CORE,
    workers: int = 1,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Run `command` (listening on `port`) until the block ends, then stop it."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            pinned(command, cores),
            env=clean_environ(settings),
            cwd=cwd or REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, log)
    try:
        _wait_until_ready(server, workers)
        yield server
    finally:
        stop(process)


def _wait_until_ready(server: Server, workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"the server exited with {server.process.returncode}: {tail(server)}")
        if _started(server.log) >= workers and get(server.url, "/__lbheartbeat__")[0] == 200:
            return
        time.sleep(0.05)
    raise BenchError(f"the server on port {server.port} did not start: {tail(server)}")


def _started(log: Path) -> int:
    return log.read_text(errors="replace").count("Application startup complete")


def busiest_share(log: Path) -> float:
    """Of the requests a server logged (its mozlog summary lines), the share of the
    process that answered most."""
    counts = Counter(_SUMMARY.findall(log.read_text(errors="replace")))
    return max(counts.values()) / sum(counts.values()) if counts else float("nan")


_SUMMARY = re.compile(r'"Type": "request\.summary".*?"Pid": (\d+)')


def tail(server: Server, lines: int = 3) -> str:
    return " | ".join(server.log.read_text(errors="replace").strip().splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to its whole session (it and its workers) after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: it and its workers
        process.wait()


# -- single requests -------------------------------------------------------------


def get(
    base: str, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET, not followed: status, headers (lower-case names), body; 0 if refused."""
    return request("GET", base + path, headers=headers)


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on `connection` (kept open) or a new one; status 0 when refused."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    own = connection is None
    if connection is None:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
    except ConnectionRefusedError:
        return 0, {}, b""
    finally:
        if own:
            connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


# -- wrk -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One wrk run: rate, latency percentiles (seconds), and what went wrong."""

    requests_per_second: float
    p50: float
    p99: float
    requests: int
    errors: int  # answers other than 2xx/3xx, and socket errors
    busiest: float | None = None  # with workers: the busiest one's share of the answers
    cpu_per_request: float | None = None  # the server's CPU seconds over the requests


def wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    cores: str | None = LOAD_CORE,
    header: str | None = None,
    script: Path | None = None,
) -> Run:
    """``wrk -t1`` against `url` (with `header`, and a Lua `script` choosing paths)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if header is not None:
        command += ["-H", header]
    if script is not None:
        command += ["-s", str(script)]
    completed = subprocess.run(
        pinned([*command, url], cores), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise BenchError(f"wrk exited with {completed.returncode}: {completed.stderr.strip()}")
    return parse_wrk(completed.stdout)


def parse_wrk(output: str) -> Run:
    """The figures of wrk's ``--latency`` report."""

    def number(pattern: str) -> float:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {pattern!r} in wrk's output: {output!r}")
        return float(match.group(1))

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {percent}% latency in wrk's output: {output!r}")
        return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]

    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad is not None:
        errors += int(bad.group(1))
    sockets = re.search(r"Socket errors:(.*)$", output, re.MULTILINE)
    if sockets is not None:
        errors += sum(int(count) for count in re.findall(r"\d+", sockets.group(1)))
    return Run(
        requests_per_second=number(r"Requests/sec:\s+([\d.]+)"),
        p50=latency("50"),
        p99=latency("99"),
        requests=int(number(r"(\d+) requests in")),
        errors=errors,
    )


def rotation_script(path: Path, paths: Sequence[str]) -> Path:
    """A wrk script sending `paths` in turn (with wrk's headers, ``-H`` included)."""
    listed = ",\n".join(f'  "{item}"' for item in paths)
    path.write_text(
        f"local paths = {{\n{listed}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        "  return wrk.format(nil, paths[i])\n"
        "end\n"
    )
    return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- a bounded client ---------------------------------------------------------------


def fetch_each(
    url: str, paths: Sequence[str], headers: Mapping[str, str], *, connections: int = 16
) -> Counter[int]:
    """GET every one of `paths` once over `connections` kept-alive connections; the count
    of each status answered."""
    parts = urlsplit(url)
    statuses: Counter[int] = Counter()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"Host: {parts.netloc}\r\n{extra}\r\n"

    async def one_connection(share: Sequence[str]) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for path in share:
                writer.write(f"GET {path} HTTP/1.1\r\n{head}".encode())
                answer = await reader.readuntil(b"\r\n\r\n")
                statuses[int(answer[9:12])] += 1
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", answer)
                if length is None:
                    raise BenchError(f"an answer without Content-Length: {answer[:200]!r}")
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    async def everything() -> None:
        await asyncio.gather(*(one_connection(paths[n::connections]) for n in range(connections)))

    asyncio.run(everything())
    return statuses


# -- SeaweedFS -----------------------------------------------------------------------


@contextlib.contextmanager
def seaweedfs(root: Path) -> Iterator[Any]:
    """A SeaweedFS S3 server as the tests start it (tests/conftest.py), stopped after."""
    from tests.conftest import SeaweedFS, start_seaweedfs, stop_seaweedfs

    for attempt in range(3):  # a port taken between choosing and binding: try again
        started = start_seaweedfs(root / f"seaweedfs-{attempt}")
        if started is not None:
            break
    else:
        raise BenchError("SeaweedFS did not start in three attempts")
    process, output, endpoint = started
    try:
        yield SeaweedFS(endpoint)
    finally:
        stop_seaweedfs(process, output)
