"""``tooltool-gateway``: serve the gateway with uvicorn.

Exit codes: 0 stopped, 2 usage, 4 settings or stores unusable (one line on
stderr naming the setting, never a traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.server import http_protocol
from gateway.settings import ServerSettings, Settings
from indexer.config import SettingsError, open_regions
from indexer.logs import LOG_FORMATS, format_exception
from indexer.redaction import redact
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


def server_options(server: ServerSettings) -> dict[str, Any]:
    """uvicorn's options for `server`: SERVER_OPTIONS and the header-limited protocol."""
    return {
        **SERVER_OPTIONS,
        "http": http_protocol(
            max_line=server.max_header_line,
            max_headers=server.max_header_bytes,
            header_timeout=server.header_timeout,
        ),
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Read the settings, open the stores and serve until interrupted."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="tooltool-gateway", description=__doc__)
    parser.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on (PORT, default 8000)")
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, help="TOOLTOOL_LOG_FORMAT (default mozlog)"
    )
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name, value in (
            ("HOST", args.host),
            ("PORT", args.port),
            ("TOOLTOOL_LOG_FORMAT", args.log_format),
        )
        if value is not None
    }
    try:
        settings = Settings.from_environ({**environ, **overrides})
        configure_logging(log_format=settings.server.log_format)
        regions = open_regions(settings.stores)
        bulk = settings.runs_embedded_indexer and not settings.stores.is_local
        indexer_regions = open_regions(settings.stores, bulk=True) if bulk else None
        app = create_app(settings, regions, indexer_regions=indexer_regions)
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
    config = uvicorn.Config(app, **server_options(settings.server))
    logger.info("listening on http://%s", _address(settings.server))
    uvicorn.Server(config).run(sockets=[sock])
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
