"""``tooltool-gateway``: serve the gateway with uvicorn.

Exit codes: 0 stopped, 2 usage, 4 settings or stores unusable (one line on
stderr naming the setting, never a traceback).

``tooltool-gateway check URL --public DIGEST --internal DIGEST`` runs the runbook's
checks against a deployment instead (gateway/runbook.py, its own exit codes).

With ``--workers N`` (``TOOLTOOL_WORKERS``) above 1, the socket is bound once and
uvicorn's supervisor runs N worker processes that accept on it; each builds its own
app from the settings (its own caches, catalog copy, Hawk nonces and, when on, embedded
indexer loop, whose passes take turns through the lease). The settings are checked
and the stores opened once before any worker starts, so a bad setting still exits 4.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from gateway import runbook
from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.metrics import GatewayMetrics
from gateway.server import http_protocol
from gateway.settings import ServerSettings, Settings
from indexer.config import SettingsError, open_regions
from indexer.logs import LOG_FORMATS, format_exception
from indexer.redaction import redact
from indexer.sentry import init_sentry
from indexer.stores import StoreError

logger = logging.getLogger(__name__)

EXIT_SETTINGS = 4

# How the gateway is served; the tests' live servers use the same options.
SERVER_OPTIONS: Mapping[str, object] = {
    "log_config": None,
    "access_log": False,  # the request-id middleware logs one summary line per request
    "proxy_headers": False,
    "server_header": False,
    "ws": "none",  # no WebSocket routes: upgrades are plain HTTP requests
    "lifespan": "on",  # runs the embedded indexer loop
}


def server_options(server: ServerSettings, metrics: GatewayMetrics | None = None) -> dict[str, Any]:
    """uvicorn's options for `server`: SERVER_OPTIONS and the header-limited protocol
    (counting its refusals in `metrics`, when given)."""
    return {
        **SERVER_OPTIONS,
        "http": http_protocol(
            max_line=server.max_header_line,
            max_headers=server.max_header_bytes,
            header_timeout=server.header_timeout,
            refused=metrics.refused if metrics is not None else None,
        ),
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Read the settings, open the stores and serve until interrupted; or, as
    ``tooltool-gateway check …``, run the runbook's checks against a deployment."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:
        return runbook.main(argv[1:])
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="tooltool-gateway",
        usage=(
            "%(prog)s [-h] [--host HOST] [--port PORT] [--log-format FORMAT] [--workers N]\n"
            "       %(prog)s check URL --public DIGEST --internal DIGEST [options]"
        ),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on (PORT, default 8000)")
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, help="TOOLTOOL_LOG_FORMAT (default mozlog)"
    )
    parser.add_argument("--workers", help="worker processes (TOOLTOOL_WORKERS, default 1)")
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in (
            ("HOST", args.host),
            ("PORT", args.port),
            ("TOOLTOOL_LOG_FORMAT", args.log_format),
            ("TOOLTOOL_WORKERS", args.workers),
        )
        if value is not None
    }
    try:
        settings = Settings.from_environ({**environ, **overrides})
        configure_logging(log_format=settings.server.log_format)
        init_sentry(settings.sentry_dsn, component="gateway")
        metrics = GatewayMetrics()
        app = build_app(settings, metrics)  # with workers, a check: each worker builds its own
    except (SettingsError, StoreError) as exc:
        print(redact(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return EXIT_SETTINGS
    except Exception as exc:  # at start, most likely a setting nothing checked: one line
        print(redact(f"StartupError: {format_exception(type(exc), exc, None)[0]}"), file=sys.stderr)
        return EXIT_SETTINGS
    if settings.stores.is_local:
        logger.info("serving %s", settings.stores.described)
    try:
        sock = _bind(settings.server)
    except OSError as exc:  # the address is taken, or not this machine's
        print(f"ServerError: cannot listen on {_address(settings.server)}: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    logger.info("listening on http://%s", _address(settings.server))
    if settings.server.workers > 1:
        del app
        return _serve_workers(settings, sock)
    config = uvicorn.Config(app, **server_options(settings.server, metrics))
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def build_app(settings: Settings, metrics: GatewayMetrics | None = None) -> ASGIApp:
    """The gateway `settings` configure, over the stores they name, counting in `metrics`."""
    regions = open_regions(settings.stores)
    bulk = settings.runs_embedded_indexer and not settings.stores.is_local
    indexer_regions = open_regions(settings.stores, bulk=True) if bulk else None
    return create_app(settings, regions, indexer_regions=indexer_regions, metrics=metrics)


def worker_app(settings: Settings, metrics: GatewayMetrics | None = None) -> ASGIApp:
    """A worker process's app: its own logging, stores and app, built from `settings`.

    A failure is one log line and uvicorn's start-up failure code, which stops the
    supervisor (any other exit would have it start the worker again, and again).
    """
    configure_logging(log_format=settings.server.log_format)
    try:
        init_sentry(settings.sentry_dsn, component="gateway")
        return build_app(settings, metrics)
    except Exception as exc:
        logger.error("the worker cannot start: %s", redact(f"{type(exc).__name__}: {exc}"))
        sys.exit(STARTUP_FAILURE)


class WorkerConfig(uvicorn.Config):
    """uvicorn's configuration for worker processes, sent to each as the settings alone.

    uvicorn pickles its configuration into every worker it spawns; the protocol class
    that `http_protocol` makes cannot be pickled, so a worker rebuilds the configuration,
    protocol and app factory included, from the settings.
    """

    def __init__(self, settings: Settings) -> None:
        metrics = GatewayMetrics()  # the worker's app and protocol count into the same
        super().__init__(
            functools.partial(worker_app, settings, metrics),
            factory=True,
            workers=settings.server.workers,
            **server_options(settings.server, metrics),
        )
        self.settings = settings

    def __reduce__(self) -> tuple[type[WorkerConfig], tuple[Settings]]:
        return (WorkerConfig, (self.settings,))


def _serve_workers(settings: Settings, sock: socket.socket) -> int:
    logger.info("starting %d worker processes", settings.server.workers)
    # Where the workers share their metrics, so that any of them answers a scrape for all.
    with tempfile.TemporaryDirectory(prefix="tooltool-metrics-") as directory:
        settings = dataclasses.replace(settings, metrics_dir=Path(directory))
        supervisor = Multiprocess(WorkerConfig(settings), sockets=[sock])
        supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        print("StartupError: a worker process could not start (its log says why)", file=sys.stderr)
        return EXIT_SETTINGS
    return 0


def _bind(server: ServerSettings) -> socket.socket:
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((server.host, server.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _address(server: ServerSettings) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{host}:{server.port}"


if __name__ == "__main__":
    sys.exit(main())
