"""The catalog as the gateway reads it: loaded from the store at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from indexer.catalog import Catalog


class CatalogCache:
    """The catalog's files and batches, at most `ttl` seconds old."""

    def __init__(
        self, catalog: Catalog, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._clock = clock
        self._loaded: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def files(self) -> list[dict[str, Any]]:
        return await self._get("files", self._catalog.files)

    async def batches(self) -> list[dict[str, Any]]:
        return await self._get("batches", self._catalog.batches)

    async def _get(
        self, name: str, load: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        loaded = self._loaded.get(name)
        now = self._clock()
        if loaded is not None and loaded[0] > now:
            return loaded[1]
        entries = await run_in_threadpool(load)
        if self._ttl > 0:
            self._loaded[name] = (now + self._ttl, entries)
        return entries
