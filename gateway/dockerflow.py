"""Dockerflow endpoints: ``/__lbheartbeat__``, ``/__heartbeat__``, ``/__version__``."""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import problem_response
from indexer.stores import Regions, StoreError

logger = logging.getLogger(__name__)


class Dockerflow:
    """Health and version endpoints for load balancers and operators."""

    def __init__(self, *, regions: Regions, version_file: Path) -> None:
        self._regions = regions
        self._version = _version(version_file)

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/__lbheartbeat__", self.lbheartbeat, methods=["GET", "HEAD"]),
            Route("/__heartbeat__", self.heartbeat, methods=["GET", "HEAD"]),
            Route("/__version__", self.version, methods=["GET", "HEAD"]),
        ]

    async def lbheartbeat(self, request: Request) -> Response:
        # No dependencies: the process answers, that is all a load balancer asks.
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def heartbeat(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        for store in self._regions:
            name = f"store:{store.region}"
            try:
                await run_in_threadpool(store.check)
            except StoreError as exc:
                # The reason (paths, endpoints) goes to the log, not to the caller.
                logger.error("heartbeat check failed: %s", exc, extra={"check": name})
                checks[name] = "error"
            else:
                checks[name] = "ok"
        failed = [name for name, result in checks.items() if result != "ok"]
        if failed:
            detail = "Failed checks: " + ", ".join(failed)
            return problem_response(503, detail, extra={"checks": checks})
        return JSONResponse(
            {"status": "ok", "checks": checks, "details": {}},
            headers={"Cache-Control": "no-store"},
        )

    async def version(self, request: Request) -> Response:
        return JSONResponse(self._version)


def _version(path: Path) -> dict[str, Any]:
    """version.json as Dockerflow defines it, else what the package metadata knows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
        logger.warning("%s is not a JSON object; using package metadata", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s); using package metadata", path, exc)
    try:
        version = importlib.metadata.version("tooltool")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"source": "tooltool", "version": version, "commit": "", "build": ""}
