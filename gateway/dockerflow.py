"""Dockerflow endpoints: ``/__lbheartbeat__``, ``/__heartbeat__``, ``/__version__``."""

from __future__ import annotations

import asyncio
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
from indexer.stores import Regions, Store, StoreError, StoreFull

logger = logging.getLogger(__name__)


class Dockerflow:
    """Health and version endpoints for load balancers and operators."""

    def __init__(
        self, *, regions: Regions, version_file: Path, heartbeat_timeout: float = 3.0
    ) -> None:
        self._regions = regions
        self._version = _version(version_file)
        self._timeout = heartbeat_timeout
        # One check per store at a time, however many heartbeats arrive while it runs.
        self._running: dict[str, asyncio.Future[str]] = {}

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
        """Every store's check, answered within the heartbeat's own budget."""
        names = [f"store:{store.region}" for store in self._regions]
        checks = [asyncio.shield(self._check(store)) for store in self._regions]
        done, _ = await asyncio.wait(checks, timeout=self._timeout)
        results = {
            name: (check.result() if check in done else "timeout")
            for name, check in zip(names, checks, strict=True)
        }
        failed = [name for name, result in results.items() if result != "ok"]
        if failed:
            detail = "Failed checks: " + ", ".join(failed)
            return problem_response(503, detail, extra={"checks": results})
        return JSONResponse(
            {"status": "ok", "checks": results, "details": {}},
            headers={"Cache-Control": "no-store"},
        )

    def _check(self, store: Store) -> asyncio.Future[str]:
        running = self._running.get(store.region)
        if running is None or running.done():
            running = asyncio.ensure_future(self._run_check(store))
            self._running[store.region] = running
        return running

    async def _run_check(self, store: Store) -> str:
        name = f"store:{store.region}"
        try:
            await run_in_threadpool(store.check)
        except StoreFull as exc:
            logger.error("heartbeat check failed: %s", exc, extra={"check": name})
            return "low-disk-space"
        except StoreError as exc:
            # The reason (paths, endpoints) goes to the log, not to the caller.
            logger.error("heartbeat check failed: %s", exc, extra={"check": name})
            return "error"
        return "ok"

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
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("cannot read %s (%s); using package metadata", path, type(exc).__name__)
    try:
        version = importlib.metadata.version("tooltool")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"source": "tooltool", "version": version, "commit": "", "build": ""}
