"""A gateway replica's copy of the catalog, kept current by following the change feed.

Loaded on the first search (never, on a replica nobody searches), then at
most every `ttl` seconds brought up to date: one read of the next feed entry
(two when nothing changed), and one read of each shard the new entries name,
however many entries name it. A replica never re-reads the whole catalog to
notice a change; it reloads everything only when it fell further behind than
the feed keeps.

Searches read no store object: they scan this copy, in a worker thread (a
few at a time), so downloads keep being answered meanwhile. The copy is
compact: a file is its answer, already serialised, its visibility and
whether it is stored; each shard's searchable text is one lowercased string,
so a shard without a match costs one substring test.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from indexer.catalog import Catalog, file_shard
from indexer.feed import FeedGap

logger = logging.getLogger(__name__)

MAX_RESULTS = 1000  # a search answers at most this many entries
MAX_FOLLOWED = 1000  # feed entries applied in one refresh; further behind, reload everything
MAX_SCANS = 4  # searches scanning at once; more wait their turn
LOAD_THREADS = 8
_FILE_FIELDS = ("algorithm", "digest", "size", "visibility", "has_instances", "instances")
_ENTRY_END = "\x00"  # between entries' texts: no query holds it (queries are single-line text)


def dumps(value: Any) -> bytes:
    """JSON as the gateway's answers write it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def legacy_file(entry: dict[str, Any]) -> dict[str, Any]:
    """A file as the legacy API shows it (catalog entries hold more)."""
    return {name: entry[name] for name in _FILE_FIELDS}


@dataclass(frozen=True, slots=True)
class _Shard:
    """One shard: keys (sorted), each entry's answer and visibilities, and its text."""

    keys: list[Any]
    answers: list[bytes]
    visibilities: list[frozenset[str]]
    stored: list[bool]
    text: str
    starts: array  # where each entry's text starts in `text`

    @classmethod
    def of(cls, shard: str, entries: list[dict[str, Any]]) -> _Shard:
        is_files = shard.startswith("files/")
        entries = sorted(entries, key=lambda entry: entry["digest" if is_files else "id"])
        texts, starts, position = [], array("L"), 0
        for entry in entries:
            text = (
                "\n".join(entry["filenames"])
                if is_files
                else f"{entry['author']}\n{entry['message']}"
            ).lower() + _ENTRY_END
            texts.append(text)
            starts.append(position)
            position += len(text)
        return cls(
            keys=[entry["digest" if is_files else "id"] for entry in entries],
            answers=[dumps(legacy_file(entry) if is_files else entry) for entry in entries],
            visibilities=[_visibilities(entry, is_files) for entry in entries],
            stored=[bool(entry.get("has_instances")) for entry in entries],
            text="".join(texts),
            starts=starts,
        )

    def matching(self, query: str) -> Iterator[int]:
        """Positions of the entries whose text holds `query` (lowercase, single-line)."""
        found = self.text.find(query)
        while found >= 0:
            position = bisect.bisect_right(self.starts, found) - 1
            yield position
            if position + 1 >= len(self.starts):
                return
            found = self.text.find(query, self.starts[position + 1])

    def find(self, key: Any) -> int | None:
        position = bisect.bisect_left(self.keys, key)
        if position < len(self.keys) and self.keys[position] == key:
            return position
        return None

    def from_prefix(self, prefix: str) -> Iterator[int]:
        for position in range(bisect.bisect_left(self.keys, prefix), len(self.keys)):
            if not self.keys[position].startswith(prefix):
                return
            yield position


_VISIBILITIES: dict[frozenset[str], frozenset[str]] = {}


def _visibilities(entry: dict[str, Any], is_files: bool) -> frozenset[str]:
    found = (
        frozenset((entry["visibility"],))
        if is_files
        else frozenset(file["visibility"] for file in entry["files"].values())
    )
    return _VISIBILITIES.setdefault(found, found)  # one object for each combination


@dataclass(frozen=True, slots=True)
class _Copy:
    """Every shard, and each kind's shards in order: replaced whole, never changed."""

    shards: dict[str, _Shard]
    files: list[_Shard]
    batches: list[_Shard]

    @classmethod
    def of(cls, shards: dict[str, _Shard]) -> _Copy:
        ordered = sorted(shards.items())
        return cls(
            shards,
            [shard for name, shard in ordered if name.startswith("files/")],
            [shard for name, shard in ordered if name.startswith("batches/")],
        )


Allowed = Callable[[frozenset[str]], bool]


class CatalogView:
    """The catalog as this replica last saw it, at most `ttl` seconds behind."""

    def __init__(
        self, catalog: Catalog, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._clock = clock
        self._copy = _Copy.of({})
        self._seq: int | None = None  # the last feed entry applied; None before loading
        self._fresh_until = float("-inf")
        self._lock = asyncio.Lock()
        self._scans = anyio.Semaphore(MAX_SCANS)

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

    # -- searches ----------------------------------------------------------

    async def files(self, query: str, *, is_prefix: bool, allowed: Allowed) -> list[bytes]:
        """The answers of the files whose digest starts with `query` (`is_prefix`) or with
        a name holding it (lowercase), that `allowed` lets through; at most MAX_RESULTS."""
        await self.refresh()
        copy = self._copy
        if is_prefix:
            shard = copy.shards.get(file_shard(query))
            return _allowed(shard, shard.from_prefix(query), allowed) if shard else []
        return await self._scan(copy.files, query, allowed)

    async def batches(self, query: str, *, allowed: Allowed) -> list[dict[str, Any]]:
        """The batches whose author or message holds `query` (lowercase), as the legacy API
        shows them (each file says whether it is stored); at most MAX_RESULTS."""
        await self.refresh()
        copy = self._copy
        found = await self._scan(copy.batches, query, allowed)
        return [self._with_instances(copy, json.loads(answer)) for answer in found]

    async def _scan(self, shards: list[_Shard], query: str, allowed: Allowed) -> list[bytes]:
        async with self._scans:
            return await run_in_threadpool(_search, shards, query, allowed)

    @staticmethod
    def _with_instances(copy: _Copy, batch: dict[str, Any]) -> dict[str, Any]:
        for entry in batch["files"].values():
            shard = copy.shards.get(file_shard(entry["digest"]))
            position = shard.find(entry["digest"]) if shard is not None else None
            entry["has_instances"] = (
                shard is not None and position is not None and (shard.stored[position])
            )
        return batch

    # -- following the feed (in a worker thread) ---------------------------

    def _catch_up(self) -> None:
        if self._seq is None:
            self._reload()
        assert self._seq is not None
        named: set[str] = set()
        seq = self._seq
        try:
            for _ in range(MAX_FOLLOWED):
                change = self._catalog.feed.read(seq + 1)
                if change is None:
                    break
                named.update(change.shards)
                seq = change.seq
            else:
                logger.warning("more than %d catalog changes behind: reloading", MAX_FOLLOWED)
                self._reload()
                return
        except FeedGap as exc:
            logger.warning("reloading the whole catalog: %s", exc)
            self._reload()
            return
        if named:
            self._copy = self._loaded(sorted(named), dict(self._copy.shards))
        self._seq = seq

    def _reload(self) -> None:
        # The head first: entries after it are followed, so none is missed.
        seq = self._catalog.feed.head()
        self._copy = self._loaded(self._catalog.shards(), {})
        self._seq = seq

    def _loaded(self, names: list[str], shards: dict[str, _Shard]) -> _Copy:
        """`shards` with these shards read again: a new copy, installed in one assignment
        (searches running meanwhile keep the copy they started with)."""
        with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, max(1, len(names)))) as pool:
            loaded = list(pool.map(self._catalog.shard, names))
        for name, entries in zip(names, loaded, strict=True):
            if entries:
                shards[name] = _Shard.of(name, entries)
            else:
                shards.pop(name, None)
        return _Copy.of(shards)


def _search(shards: Iterable[_Shard], query: str, allowed: Allowed) -> list[bytes]:
    found: list[bytes] = []
    for shard in shards:
        if query in shard.text:
            found.extend(_allowed(shard, shard.matching(query), allowed, MAX_RESULTS - len(found)))
            if len(found) >= MAX_RESULTS:
                break
    return found


def _allowed(
    shard: _Shard, positions: Iterable[int], allowed: Allowed, limit: int = MAX_RESULTS
) -> list[bytes]:
    answers = []
    for position in positions:
        if allowed(shard.visibilities[position]):
            answers.append(shard.answers[position])
            if len(answers) >= limit:
                break
    return answers
