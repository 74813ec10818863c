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


class _Loading:
    """A store read in flight, which requests for the same digest share."""

    __slots__ = ("future", "is_stale")

    def __init__(self, future: asyncio.Future[IndexObject | None]) -> None:
        self.future = future
        # Set when the digest's index object was written during the read: its answer
        # may predate the write, so it is neither remembered nor shared further.
        self.is_stale = False


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
        # Lookups by `get` answered from an entry, and the others (the fast path counts
        # the hits it answers from `peek` itself).
        self.hits = 0
        self.misses = 0

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
            self.hits += 1
            return entry.value
        self.misses += 1
        while (pending := self._loading.get(digest)) is not None:
            if pending.is_stale:
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
        loading = _Loading(future)
        self._loading[digest] = loading
        try:
            try:
                value = await run_in_threadpool(self._load, digest)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                future.set_exception(exc)
                future.exception()  # marks it retrieved when nobody else waits
                raise
            future.set_result(value)
            if not loading.is_stale:
                self._remember(digest, value)
                # An invalidation from another thread marks the read (found here until the
                # end), then drops the entry: it either dropped this one, or is seen here.
                if loading.is_stale:
                    self._entries.pop(digest, None)
            return value
        finally:
            if self._loading.get(digest) is loading:
                del self._loading[digest]

    def invalidate(self, digest: str) -> None:
        """Forget the digest (its index object was written), so the next get reads the
        store. Safe from any thread (the embedded indexer's): it marks the digest's read
        in flight, if any, then drops its entry; other digests are untouched."""
        loading = self._loading.get(digest)
        if loading is not None:
            loading.is_stale = True
        self._entries.pop(digest, None)

    def invalidate_absent(self, digest: str) -> None:
        """Forget a cached "no such digest" (an upload of it was reported complete), and
        nothing else: a known file's cached answer stays, and reads in flight are still
        shared (the index write itself invalidates, when this process makes it)."""
        entry = self._entries.get(digest)
        if entry is not None and entry.value is None:
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
