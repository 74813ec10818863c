"""``tooltool-gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import uvicorn

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.settings import Settings
from indexer.config import SettingsError, open_regions
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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Read the settings, open the stores and serve until interrupted."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="tooltool-gateway", description=__doc__)
    parser.add_argument("--host", default=environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(environ.get("PORT", "8000")))
    parser.add_argument(
        "--log-format",
        choices=("mozlog", "text"),
        default=environ.get("TOOLTOOL_LOG_FORMAT", "mozlog"),
    )
    args = parser.parse_args(argv)
    configure_logging(json_format=args.log_format == "mozlog")
    try:
        settings = Settings.from_environ(environ)
        regions = open_regions(settings.stores)
    except (SettingsError, StoreError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    if settings.stores.is_local:
        logger.info("serving the local store at %s", settings.stores.data_dir.resolve())
    app = create_app(settings, regions)
    uvicorn.run(app, host=args.host, port=args.port, **SERVER_OPTIONS)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
