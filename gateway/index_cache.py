"""An in-process cache of index objects, so a hot digest costs no store call.

Staleness bound: an answer is at most ``ttl`` seconds old for a digest that
exists and ``negative_ttl`` seconds for one that does not. Concurrent misses
for one digest share a single store read. Errors (an unavailable store, a
malformed object) are never cached.

Index writes this process makes or is told of (the embedded indexer's, a
PATCH, an upload reported complete) call :meth:`IndexCache.invalidate`: the
next request reads the store, and a read that began before the write is
neither remembered nor shared with requests that come after it. So an answer
never outlives such a write, a negative one included.
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


@dataclass(frozen=True, slots=True)
class _Loading:
    future: asyncio.Future[IndexObject | None]
    generation: int  # of the cache when the read began


class Missing:
    """What :meth:`IndexCache.peek` answers when it holds no fresh entry."""


MISSING = Missing()


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
        self._loading: dict[str, _Loading] = {}
        # Counts invalidations: a read that began before one is stale for everyone after it.
        self._generation = 0

    def peek(self, digest: str) -> IndexObject | Missing | None:
        """The cached answer for the digest if it is fresh, else :data:`MISSING`; never
        reads the store."""
        entry = self._entries.get(digest)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        return MISSING

    async def get(self, digest: str) -> IndexObject | None:
        """The digest's index object, or None when the index has none."""
        entry = self._entries.get(digest)
        if entry is not None and entry.expires > self._clock():
            return entry.value
        while (pending := self._loading.get(digest)) is not None:
            if pending.generation != self._generation:
                break  # began before an index write: this request reads again
            try:
                return await asyncio.shield(pending.future)
            except asyncio.CancelledError:
                # The loader's request was cancelled, not this one: load it here.
                if not pending.future.cancelled() or _is_cancelling():
                    raise
        return await self._load_shared(digest)

    async def _load_shared(self, digest: str) -> IndexObject | None:
        future: asyncio.Future[IndexObject | None] = asyncio.get_running_loop().create_future()
        loading = _Loading(future, self._generation)
        self._loading[digest] = loading
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
            if self._loading.get(digest) is loading:
                del self._loading[digest]
        future.set_result(value)
        if loading.generation == self._generation:
            self._remember(digest, value)
            # An invalidation from another thread counts first, then drops the entry: it
            # either dropped this one, or is seen here.
            if loading.generation != self._generation:
                self._entries.pop(digest, None)
        return value

    def invalidate(self, digest: str) -> None:
        """Forget the digest, so the next get reads the store. Safe from any thread (the
        embedded indexer's): it only drops an entry and counts."""
        self._generation += 1
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
