"""``make run-s3``: ToolTool's production topology on this machine, in the foreground.

SeaweedFS (the ``weed`` binary of the test extra) stands in for S3 with two
regions; ``tooltool-indexer init --create`` makes their buckets; two gateway
replicas serve on two ports, and one ``tooltool-indexer watch`` verifies
uploads and copies them between the regions. Its settings, a development
client and the secrets are kept in the data directory (``./tooltool-s3``):
``. tooltool-s3/tooltool.env`` gives a shell the same settings, to run
``tooltool-indexer`` against it. A process that exits is reported and the others
keep running; Ctrl-C or SIGTERM stops every process.

``docker-compose.yml`` runs the same services with the same commands and
settings (a test keeps them in step: :data:`COMMANDS`, :data:`SETTINGS`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deploy.seaweedfs import (
    PORT_NAMES,
    SeaweedFSError,
    free_ports,
    start_seaweedfs,
    stop_seaweedfs,
)
from indexer.cli import terminated_on_sigterm
from indexer.config import SettingsError, secret_file

REGIONS = (("us-east-1", "tooltool-east"), ("us-west-2", "tooltool-west"))
ACCESS_KEY_ID = "tooltool"
DEV_CLIENT = "tooltool-dev"
SCOPE_PREFIX = "project:releng:services/tooltool/api"
# The services besides the store, and what each runs (the gateways' address comes from
# HOST and PORT); docker-compose.yml names the same.
COMMANDS: Mapping[str, tuple[str, ...]] = {
    "init": ("tooltool-indexer", "init", "--create"),
    "gateway-a": ("tooltool-gateway",),
    "gateway-b": ("tooltool-gateway",),
    # Run in the data directory (compose: its volume), where it writes its metrics.
    "indexer": ("tooltool-indexer", "watch", "--interval", "2", "--metrics-file", "indexer.prom"),
}
GATEWAYS = ("gateway-a", "gateway-b")
# What every service is configured with (the gateways also with HOST and PORT).
SETTINGS = (
    "S3_REGIONS",
    "S3_ENDPOINT_URL",
    "S3_REGIONS_ACCESS_KEY_ID",
    "S3_REGIONS_SECRET_ACCESS_KEY",
    "TOOLTOOL_CLIENTS_FILE",
    "TOOLTOOL_JWT_SECRET",
)
# Tuning an operator may set in the shell (``TOOLTOOL_HEARTBEAT_INDEXER_SECONDS=15 make
# run-s3``), passed on to every service; any other ToolTool setting there is ignored, as
# it would change what the topology is (its store, identities or secrets).
PASSED_ON = (
    "TOOLTOOL_HEARTBEAT_INDEXER_SECONDS",
    "TOOLTOOL_HEARTBEAT_UPLOAD_SECONDS",
    "TOOLTOOL_HEARTBEAT_TIMEOUT",
    "TOOLTOOL_HEARTBEAT_RECHECK_SECONDS",
    "TOOLTOOL_LEASE_SECONDS",
    "TOOLTOOL_LOG_FORMAT",
    "TOOLTOOL_METRICS_NETWORKS",
    "TOOLTOOL_WORKERS",
    "TOOLTOOL_INDEX_CACHE_SECONDS",
    "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS",
    "TOOLTOOL_MAX_PENDING_FILES",
    "TOOLTOOL_MAX_PENDING_BYTES",
    "TOOLTOOL_TOKEN_LIFETIME",
)
SETTING_PREFIXES = ("S3_", "TOOLTOOL_", "CLOUDFRONT_", "TASKCLUSTER_")
STOP_SECONDS = 10.0
READY_SECONDS = 120.0  # two Python processes starting on a loaded machine


class TopologyError(Exception):
    """A service could not start, or stopped on its own."""


@dataclass
class Service:
    """A running process of the topology, its output going to ``<data dir>/<name>.log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # should it have been paused (kill -STOP)
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run-s3", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("tooltool-s3"))
    parser.add_argument("--host", default="127.0.0.1", help="the gateways' address")
    parser.add_argument(
        "--ports", default="8001,8002", help="the two gateways' ports (default 8001,8002)"
    )
    args = parser.parse_args(argv)
    try:
        ports = _ports(args.ports)
    except ValueError as exc:
        parser.error(str(exc))
    with terminated_on_sigterm():  # SIGTERM unwinds as Ctrl-C does
        try:
            return run(args.data_dir.resolve(), args.host, ports)
        except (TopologyError, SeaweedFSError, SettingsError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def run(data_dir: Path, host: str, ports: tuple[int, int]) -> int:
    """Start everything, wait for SIGTERM or Ctrl-C (or every service to exit), stop it all."""
    data_dir.mkdir(parents=True, exist_ok=True)
    passed = sorted(name for name in PASSED_ON if name in os.environ)
    ignored = sorted(
        name for name in os.environ if name.startswith(SETTING_PREFIXES) and name not in PASSED_ON
    )
    if passed:
        print(f"passed on from this shell: {', '.join(passed)}", flush=True)
    if ignored:
        print(f"ignored from this shell: {', '.join(ignored)}", flush=True)
    with contextlib.ExitStack() as stack:
        try:
            environ = _start_store(data_dir, stack)
            _init(data_dir, environ)
            gateways = [
                stack.enter_context(
                    _service(name, data_dir, {**environ, "HOST": host, "PORT": str(port)})
                )
                for name, port in zip(GATEWAYS, ports, strict=True)
            ]
            indexer = stack.enter_context(_service("indexer", data_dir, environ, cwd=data_dir))
            urls = [f"http://{host}:{port}" for port in ports]
            for service, url in zip(gateways, urls, strict=True):
                _wait_until_serving(service, url)
                print(f"{service.name} at {url} (pid {service.process.pid})", flush=True)
            print(f"indexer: {' '.join(COMMANDS['indexer'])} (pid {indexer.process.pid})")
            print(
                f"ready: logs in {data_dir}, the indexer's metrics in"
                f" {data_dir / 'indexer.prom'}; Ctrl-C stops everything",
                flush=True,
            )
            _watch([*gateways, indexer])
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (indexer.cli.Terminated)
            print("stopping", flush=True)
    return 0


def _start_store(data_dir: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """SeaweedFS in ``<data dir>/seaweedfs``, and the settings every service gets."""
    secret = secret_file(data_dir / ".s3-secret", "S3_REGIONS_SECRET_ACCESS_KEY")
    root = data_dir / "seaweedfs"
    started = None
    for attempt in range(3):  # a port taken between choosing and binding: try again
        ports = _store_ports(root, fresh=attempt > 0)
        started = start_seaweedfs(root, access_key=ACCESS_KEY_ID, secret_key=secret, ports=ports)
        if started is not None:
            break
    if started is None:
        raise TopologyError(f"SeaweedFS did not start: see {data_dir / 'seaweedfs' / 'weed.out'}")
    process, output, endpoint = started
    stack.callback(stop_seaweedfs, process, output)
    print(f"seaweedfs at {endpoint} (pid {process.pid})", flush=True)
    clients = data_dir / "clients.json"
    if not clients.exists():
        clients.write_text(json.dumps([_dev_client(data_dir)], indent=2) + "\n")
        clients.chmod(0o600)
    environ = {
        "S3_REGIONS": ";".join(f"{region}:{bucket}" for region, bucket in REGIONS),
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGIONS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_REGIONS_SECRET_ACCESS_KEY": secret,
        "TOOLTOOL_CLIENTS_FILE": str(clients),
        "TOOLTOOL_JWT_SECRET": secret_file(data_dir / ".jwt-secret", "TOOLTOOL_JWT_SECRET"),
    }
    settings = data_dir / "tooltool.env"
    settings.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in environ.items()))
    settings.chmod(0o600)
    print(f"settings in {settings}; the development client {DEV_CLIENT} in {clients}")
    return environ


def _store_ports(root: Path, *, fresh: bool) -> dict[str, int]:
    """SeaweedFS's ports: those of the last start (kept in ``<root>/ports.json``, so the
    endpoint of ``tooltool.env`` stays the same across restarts), or free ones."""
    kept = root / "ports.json"
    if not fresh:
        with contextlib.suppress(OSError, ValueError, TypeError):
            ports = json.loads(kept.read_text())
            if set(ports) == set(PORT_NAMES) and all(type(p) is int for p in ports.values()):
                return {name: ports[name] for name in PORT_NAMES}
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    root.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(ports) + "\n")
    return ports


def _dev_client(data_dir: Path) -> dict[str, object]:
    """A client holding every scope, as the embedded default's development client."""
    token = secret_file(data_dir / ".dev-access-token", "the development client's accessToken")
    return {
        "clientId": DEV_CLIENT,
        "accessToken": token,
        "scopes": [
            f"{SCOPE_PREFIX}/{scope}"
            for scope in (
                "download/public",
                "download/internal",
                "upload/public",
                "upload/internal",
                "manage",
            )
        ],
    }


def _init(data_dir: Path, environ: Mapping[str, str]) -> None:
    """``tooltool-indexer init --create``, its lines shown; a problem stops the start."""
    command = [_binary(COMMANDS["init"][0]), *COMMANDS["init"][1:]]
    result = subprocess.run(
        command,
        env=_environ(environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    for line in result.stdout.splitlines():
        print(f"init: {line}", flush=True)
    if result.returncode != 0:
        raise TopologyError(f"init exited with {result.returncode}: {result.stderr.strip()}")


@contextlib.contextmanager
def _service(
    name: str, data_dir: Path, environ: Mapping[str, str], *, cwd: Path | None = None
) -> Iterator[Service]:
    command = [_binary(COMMANDS[name][0]), *COMMANDS[name][1:]]
    log = (data_dir / f"{name}.log").open("ab")
    env = _environ(environ)
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd
    )
    service = Service(name, process, log)
    try:
        yield service
    finally:
        service.stop()


def _environ(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without ToolTool's settings (but the tuning of
    :data:`PASSED_ON`), then `settings`: nothing else set in the shell changes the
    topology."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED_ON
        or (not name.startswith(SETTING_PREFIXES) and name not in ("HOST", "PORT"))
    }
    return {**inherited, **settings}


def _binary(name: str) -> str:
    """The console script of this environment (the project's virtual environment)."""
    beside = Path(sys.executable).with_name(name)
    if not beside.exists():
        raise TopologyError(f"{beside} is missing: install the project (make run-s3 does)")
    return str(beside)


def _wait_until_serving(service: Service, url: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise TopologyError(
                f"{service.name} exited with {service.process.returncode}: see {service.log.name}"
            )
        try:
            with urllib.request.urlopen(f"{url}/__lbheartbeat__", timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise TopologyError(f"{service.name} did not answer at {url}: see {service.log.name}")


def _watch(services: Sequence[Service]) -> None:
    """Until stopped: a service that exits on its own is reported, once, and the others
    keep running (a dead indexer is for the gateways' heartbeat to notice); when none
    is left, the topology stops."""
    running = list(services)
    while running:
        for service in [s for s in running if s.process.poll() is not None]:
            running.remove(service)
            print(
                f"{service.name} exited with {service.process.returncode}:"
                f" see {service.log.name}; the others keep running",
                flush=True,
            )
        time.sleep(0.5)
    raise TopologyError("every service exited")


def _ports(text: str) -> tuple[int, int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(part.isdigit() and 0 < int(part) < 65536 for part in parts):
        raise ValueError(f"--ports: expected two ports like 8001,8002, got {text!r}")
    first, second = (int(part) for part in parts)
    if first == second:
        raise ValueError("--ports: the two gateways need two ports")
    return first, second


if __name__ == "__main__":
    sys.exit(main())
