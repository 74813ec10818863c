"""Dockerflow endpoints: ``/__lbheartbeat__``, ``/__heartbeat__``, ``/__version__``."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import problem_response
from gateway.indexer_health import IndexerHealth
from indexer.stores import Regions, Store, StoreError, StoreFull

logger = logging.getLogger(__name__)

# A finished check's result answers the heartbeats of the next seconds too: however
# often (and by whomever) it is called, the stores see one round of checks per interval.
RECHECK_SECONDS = 2.0


class Dockerflow:
    """Health and version endpoints for load balancers and operators."""

    def __init__(
        self,
        *,
        regions: Regions,
        version_file: Path,
        heartbeat_timeout: float = 3.0,
        indexer: IndexerHealth | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        """`indexer` judges a separate indexer's liveness (None: no such check)."""
        self._regions = regions
        self._indexer = indexer
        self._version = _version(version_file)
        self._timeout = heartbeat_timeout
        # One run of each check at a time, however many heartbeats arrive while it runs.
        self._running: dict[str, asyncio.Future[str]] = {}
        self._last: dict[str, tuple[float, str]] = {}  # when each check last ended, and how
        self._recheck = recheck_seconds
        self._details: dict[str, dict[str, Any]] = {}

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
        """Every check, answered within the heartbeat's own budget."""
        runs: dict[str, Callable[[], Awaitable[str]]] = {
            f"store:{store.region}": functools.partial(self._store_check, store)
            for store in self._regions
        }
        if self._indexer is not None:
            runs["indexer"] = self._indexer_check
        checks = [asyncio.shield(self._check(name, run)) for name, run in runs.items()]
        done, _ = await asyncio.wait(checks, timeout=self._timeout)
        results = {
            name: (check.result() if check in done else "timeout")
            for name, check in zip(runs, checks, strict=True)
        }
        details = {name: self._details[name] for name in runs if name in self._details}
        failed = [name for name, result in results.items() if result != "ok"]
        if failed:
            detail = "Failed checks: " + ", ".join(failed)
            return problem_response(503, detail, extra={"checks": results, "details": details})
        return JSONResponse(
            {"status": "ok", "checks": results, "details": details},
            headers={"Cache-Control": "no-store"},
        )

    def _check(self, name: str, run: Callable[[], Awaitable[str]]) -> asyncio.Future[str]:
        """The check's run in progress, or the result of its last one if that ended
        within the recheck interval, else a new run."""
        running = self._running.get(name)
        if running is not None and not running.done():
            return running
        last = self._last.get(name)
        if last is not None and time.monotonic() - last[0] < self._recheck:
            answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            answered.set_result(last[1])
            return answered
        running = asyncio.ensure_future(self._remembered(name, run))
        self._running[name] = running
        return running

    async def _remembered(self, name: str, run: Callable[[], Awaitable[str]]) -> str:
        result = await run()
        self._last[name] = (time.monotonic(), result)
        return result

    async def _store_check(self, store: Store) -> str:
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

    async def _indexer_check(self) -> str:
        assert self._indexer is not None
        try:
            state = await run_in_threadpool(self._indexer.check)
        except StoreError as exc:
            logger.error("heartbeat check failed: %s", exc, extra={"check": "indexer"})
            self._details.pop("indexer", None)
            return "error"
        self._details["indexer"] = state.details()
        if state.status != "ok":
            logger.warning(
                "heartbeat check failed: indexer %s", state.status, extra=state.details()
            )
        return state.status

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
