"""An in-process cache of index objects, so a hot digest costs no store call.

Staleness bound: an answer is at most ``ttl`` seconds old for a digest that
exists and ``negative_ttl`` seconds for one that does not. Concurrent misses
for one digest share a single store read. Errors (an unavailable store, a
malformed object) are never cached.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from indexer.index import read_index
from indexer.schema import IndexObject
from indexer.stores import Store


@dataclass(frozen=True, slots=True)
class _Entry:
    value: IndexObject | None
    expires: float


class IndexCache:
    """Index objects of one store, by digest, cached for a bounded time."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, asyncio.Future[IndexObject | None]] = {}

    async def get(self, digest: str) -> IndexObject | None:
        """The digest's index object, or None when the index has none."""
        entry = self._entries.get(digest)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        while (pending := self._loading.get(digest)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                # The loader's request was cancelled, not this one: load it here.
                if not pending.cancelled() or _is_cancelling():
                    raise
        return await self._load_shared(digest)

    async def _load_shared(self, digest: str) -> IndexObject | None:
        future: asyncio.Future[IndexObject | None] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            value = await run_in_threadpool(self._load, digest)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved when nobody else waits
            raise
        finally:
            del self._loading[digest]
        future.set_result(value)
        self._remember(digest, value)
        return value

    def invalidate(self, digest: str) -> None:
        """Forget the digest, so the next get reads the store."""
        self._entries.pop(digest, None)

    def _load(self, digest: str) -> IndexObject | None:
        found = read_index(self._store, digest)
        return None if found is None else found[0]

    def _remember(self, digest: str, value: IndexObject | None) -> None:
        ttl = self._ttl if value is not None else self._negative_ttl
        if ttl <= 0 or self._max_entries <= 0:
            return
        self._entries[digest] = _Entry(value, self._clock() + ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def _is_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
