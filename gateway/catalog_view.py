"""A gateway replica's copy of the catalog, kept current by following the change feed.

Loaded on the first search (never, on a replica nobody searches), then at
most every `ttl` seconds brought up to date: one read of the next feed entry
(two when nothing changed), and a read of each shard the new entries name.
A replica never re-reads the whole catalog to notice a change; it reloads
everything only when it fell further behind than the feed keeps.

Searches read no store object: they scan this copy. Each shard keeps its
searchable text lowercased beside its entries, so a shard without a match
costs one substring test.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from indexer.catalog import Catalog, file_shard
from indexer.feed import FeedGap

logger = logging.getLogger(__name__)

MAX_RESULTS = 1000  # a search answers at most this many entries
MAX_FOLLOWED = 1000  # feed entries applied in one refresh; further behind, reload everything
LOAD_THREADS = 8


@dataclass(frozen=True, slots=True)
class _Shard:
    """One shard's entries, their keys (sorted), and their text as searches see it."""

    entries: list[dict[str, Any]]
    keys: list[Any]
    texts: list[str]
    text: str

    @classmethod
    def of(cls, shard: str, entries: list[dict[str, Any]]) -> _Shard:
        if shard.startswith("files/"):
            entries = sorted(entries, key=lambda entry: entry["digest"])
            keys: list[Any] = [entry["digest"] for entry in entries]
            texts = ["\n".join(entry["filenames"]).lower() for entry in entries]
        else:
            entries = sorted(entries, key=lambda entry: entry["id"])
            keys = [entry["id"] for entry in entries]
            texts = [f"{entry['author']}\n{entry['message']}".lower() for entry in entries]
        return cls(entries, keys, texts, "\n".join(texts))

    def matching(self, query: str) -> Iterator[dict[str, Any]]:
        """Entries whose text holds `query` (lowercase, single-line)."""
        if query in self.text:
            for entry, text in zip(self.entries, self.texts, strict=True):
                if query in text:
                    yield entry

    def find(self, key: Any) -> dict[str, Any] | None:
        position = bisect.bisect_left(self.keys, key)
        if position < len(self.keys) and self.keys[position] == key:
            return self.entries[position]
        return None

    def from_prefix(self, prefix: str) -> Iterator[dict[str, Any]]:
        for position in range(bisect.bisect_left(self.keys, prefix), len(self.keys)):
            if not self.keys[position].startswith(prefix):
                break
            yield self.entries[position]


_EMPTY = _Shard([], [], [], "")


class CatalogView:
    """The catalog as this replica last saw it, at most `ttl` seconds behind."""

    def __init__(
        self, catalog: Catalog, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._clock = clock
        self._shards: dict[str, _Shard] = {}
        self._ordered: dict[str, list[_Shard]] = {"files/": [], "batches/": []}
        self._seq: int | None = None  # the last feed entry applied; None before loading
        self._fresh_until = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """This replica changed the catalog: the next read follows the feed at once."""
        self._fresh_until = float("-inf")

    def write(self, digests: list[str], batch_ids: list[int]) -> None:
        """Bring these entries up to date in the store (in a worker thread), and see them
        at the next read."""
        self._catalog.update(digests, batch_ids)
        self.invalidate()

    async def refresh(self) -> None:
        """Bring the copy up to date when it is older than `ttl`."""
        if self._clock() < self._fresh_until:
            return
        async with self._lock:
            now = self._clock()
            if now < self._fresh_until:
                return  # another search refreshed it meanwhile
            await run_in_threadpool(self._catch_up)
            self._fresh_until = now + self._ttl

    # -- reads (after refresh) -------------------------------------------

    def files_with_prefix(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Files whose digest starts with `prefix` (at least the shard's digits long)."""
        return self._shards.get(file_shard(prefix), _EMPTY).from_prefix(prefix)

    def files_named(self, query: str) -> Iterator[dict[str, Any]]:
        """Files with a name holding `query` (lowercase), in digest order."""
        for shard in self._sorted("files/"):
            yield from shard.matching(query)

    def batches_matching(self, query: str) -> Iterator[dict[str, Any]]:
        """Batches whose author or message holds `query` (lowercase), in id order."""
        for shard in self._sorted("batches/"):
            yield from shard.matching(query)

    def file(self, digest: str) -> dict[str, Any] | None:
        return self._shards.get(file_shard(digest), _EMPTY).find(digest)

    def _sorted(self, kind: str) -> list[_Shard]:
        return self._ordered[kind]

    # -- following the feed (in a worker thread) ---------------------------

    def _catch_up(self) -> None:
        if self._seq is None:
            self._reload()
        try:
            for _ in range(MAX_FOLLOWED):
                assert self._seq is not None
                change = self._catalog.feed.read(self._seq + 1)
                if change is None:
                    return
                self._load(change.shards)
                self._seq = change.seq
        except FeedGap as exc:
            logger.warning("reloading the whole catalog: %s", exc)
            self._reload()
            return
        logger.warning("more than %d catalog changes behind: reloading it all", MAX_FOLLOWED)
        self._reload()

    def _reload(self) -> None:
        # The head first: entries after it are followed, so none is missed.
        seq = self._catalog.feed.head()
        self._load(self._catalog.shards(), everything=True)
        self._seq = seq

    def _load(self, names: tuple[str, ...] | list[str], *, everything: bool = False) -> None:
        """Read these shards, and install them in one assignment: searches running
        meanwhile keep the copy they started with."""
        with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, max(1, len(names)))) as pool:
            loaded = list(pool.map(self._catalog.shard, names))
        shards = {} if everything else dict(self._shards)
        for name, entries in zip(names, loaded, strict=True):
            if entries:
                shards[name] = _Shard.of(name, entries)
            else:
                shards.pop(name, None)
        self._ordered = {
            kind: [shard for name, shard in sorted(shards.items()) if name.startswith(kind)]
            for kind in ("files/", "batches/")
        }
        self._shards = shards
