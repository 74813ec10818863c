"""A bare Starlette app answering a constant 302, served as ``tooltool-gateway`` serves.

    .venv/bin/python bench/bare_app.py --port 8001

What bench/fastpath.py measures the gateway against: the same uvicorn options
(``gateway.cli.server_options``: the header-limited httptools protocol, no access
log, lifespan on) and event loop (uvloop, uvicorn's "auto"), the same bound-socket
start, and a route that does nothing but redirect. ``/__lbheartbeat__`` answers 200
so the bench knows it is up.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from gateway.cli import server_options
from gateway.settings import ServerSettings

LOCATION = "https://bucket.s3.us-east-1.amazonaws.com/sha512/blob?X-Amz-Signature=0"


async def redirect(request: Any) -> Response:
    return Response(status_code=302, headers={"Location": LOCATION})


async def heartbeat(request: Any) -> Response:
    return Response(status_code=200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(
        routes=[Route("/sha512/{digest}", redirect), Route("/__lbheartbeat__", heartbeat)]
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(app, **server_options(ServerSettings()))
    print("Application startup complete", flush=True)  # what the bench waits for
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
