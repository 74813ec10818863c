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
MAX_EXAMINED = 5000  # matching batches one upload search looks at
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # an upload search stops adding batches past this
CHECK_BEHIND = 20  # feed entries followed before asking how far behind the copy is
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
class _Part:
    """Entries of one shard (of one visibility, for files): keys (sorted), each entry's
    answer, and their searchable text in one string."""

    keys: list[Any]
    answers: list[bytes]
    stored: list[bool]
    text: str
    starts: array  # where each entry's text starts in `text`

    @classmethod
    def of(cls, entries: list[dict[str, Any]], *, is_files: bool) -> _Part:
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


_ALL = "all"  # batches are one part: who may see one depends on its files, looked up


def _shard(name: str, entries: list[dict[str, Any]]) -> dict[str, _Part]:
    """A shard's parts: files by visibility (a caller scans only what it may see)."""
    if not name.startswith("files/"):
        return {_ALL: _Part.of(sorted(entries, key=lambda e: e["id"]), is_files=False)}
    parts: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(entries, key=lambda e: e["digest"]):
        parts.setdefault(entry["visibility"], []).append(entry)
    return {visibility: _Part.of(found, is_files=True) for visibility, found in parts.items()}


@dataclass(frozen=True, slots=True)
class _Copy:
    """Every shard, and each kind's shards in order: replaced whole, never changed."""

    shards: dict[str, dict[str, _Part]]
    files: list[dict[str, _Part]]
    batches: list[_Part]

    @classmethod
    def of(cls, shards: dict[str, dict[str, _Part]]) -> _Copy:
        ordered = sorted(shards.items())
        return cls(
            shards,
            [parts for name, parts in ordered if name.startswith("files/")],
            [parts[_ALL] for name, parts in ordered if name.startswith("batches/")],
        )

    def file(self, digest: str) -> tuple[str, bool] | None:
        """A file's visibility and whether it is stored; None when it is not indexed."""
        for visibility, part in self.shards.get(file_shard(digest), {}).items():
            position = part.find(digest)
            if position is not None:
                return visibility, part.stored[position]
        return None


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
        self._generation = 0  # moved by every invalidate()
        self._lock = asyncio.Lock()
        self._scans = anyio.Semaphore(MAX_SCANS)

    def invalidate(self) -> None:
        """This replica changed the catalog: the next read follows the feed at once."""
        self._generation += 1
        self._fresh_until = float("-inf")

    def write(self, digests: list[str], batch_ids: list[int]) -> None:
        """Bring these entries up to date in the store (in a worker thread), and see them
        at the next read."""
        try:
            self._catalog.update(digests, batch_ids)
        finally:
            self.invalidate()

    async def refresh(self) -> None:
        """Bring the copy up to date when it is older than `ttl`."""
        if self._clock() < self._fresh_until:
            return
        async with self._lock:
            now, generation = self._clock(), self._generation
            if now < self._fresh_until:
                return  # another search refreshed it meanwhile
            await run_in_threadpool(self._catch_up)
            if generation == self._generation:  # else a write came in meanwhile: not fresh
                self._fresh_until = now + self._ttl

    # -- reads -------------------------------------------------------------

    async def files(self, query: str, *, is_prefix: bool, allowed: Allowed) -> list[bytes]:
        """The answers of the files whose digest starts with `query` (`is_prefix`) or with
        a name holding it (lowercase), that `allowed` lets through; at most MAX_RESULTS."""
        await self.refresh()
        copy = self._copy
        if is_prefix:
            parts = copy.shards.get(file_shard(query), {})
            return _prefixed(parts, query, allowed)
        async with self._scans:
            return await run_in_threadpool(_search_files, copy.files, query, allowed)

    async def batches(self, query: str, *, allowed: Allowed) -> list[dict[str, Any]]:
        """The batches whose author or message holds `query` (lowercase) that `allowed`
        lets through, as the legacy API shows them; at most MAX_RESULTS."""
        await self.refresh()
        copy = self._copy
        async with self._scans:
            return await run_in_threadpool(_search_batches, copy, query, allowed)

    async def as_shown(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A batch as the legacy API shows it: each file as the index knows it now."""
        await self.refresh()
        return _as_shown(self._copy, batch)

    # -- following the feed (in a worker thread) ---------------------------

    def _catch_up(self) -> None:
        if self._seq is None:
            self._reload()
        assert self._seq is not None
        named: set[str] = set()
        seq = self._seq
        try:
            for followed in range(MAX_FOLLOWED + 1):
                if followed == MAX_FOLLOWED or (
                    followed == CHECK_BEHIND and self._catalog.feed.head() - seq > MAX_FOLLOWED
                ):
                    raise FeedGap(f"over {MAX_FOLLOWED} changes behind")  # a reload reads less
                change = self._catalog.feed.read(seq + 1)
                if change is None:
                    break
                named.update(change.shards)
                seq = change.seq
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

    def _loaded(self, names: list[str], shards: dict[str, dict[str, _Part]]) -> _Copy:
        """`shards` with these shards read again: a new copy, installed in one assignment
        (searches running meanwhile keep the copy they started with)."""
        with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, max(1, len(names)))) as pool:
            # Each shard made compact as it is read: the parsed entries of all of them
            # are never held at once.
            loaded = list(pool.map(self._read_shard, names))
        for name, parts in zip(names, loaded, strict=True):
            if parts:
                shards[name] = parts
            else:
                shards.pop(name, None)
        return _Copy.of(shards)

    def _read_shard(self, name: str) -> dict[str, _Part]:
        entries = self._catalog.shard(name)
        return _shard(name, entries) if entries else {}


def _prefixed(parts: dict[str, _Part], prefix: str, allowed: Allowed) -> list[bytes]:
    found: list[tuple[str, bytes]] = []
    for visibility, part in parts.items():
        if allowed(frozenset((visibility,))):
            found.extend((part.keys[at], part.answers[at]) for at in part.from_prefix(prefix))
    return [answer for _, answer in sorted(found)[:MAX_RESULTS]]


def _search_files(shards: Iterable[dict[str, _Part]], query: str, allowed: Allowed) -> list[bytes]:
    """Only the parts the caller may see are scanned: what it may not see costs nothing
    and tells nothing (not even by the time it takes)."""
    visible = {
        visibility: allowed(frozenset((visibility,))) for visibility in ("public", "internal")
    }
    found: list[bytes] = []
    for parts in shards:
        for visibility, part in parts.items():
            if visible.get(visibility, False) and query in part.text:
                for position in part.matching(query):
                    found.append(part.answers[position])
                    if len(found) >= MAX_RESULTS:
                        return found
    return found


def _search_batches(copy: _Copy, query: str, allowed: Allowed) -> list[dict[str, Any]]:
    """Batches are let through by what their files are now (a file made internal since
    keeps its batch from those who may not see it); at most MAX_EXAMINED matches are
    looked at, and answers stop at MAX_ANSWER_BYTES."""
    found: list[dict[str, Any]] = []
    examined = size = 0
    for part in copy.batches:
        if query not in part.text:
            continue
        for position in part.matching(query):
            examined += 1
            if examined > MAX_EXAMINED:
                return found
            batch = _as_shown(copy, json.loads(part.answers[position]))
            visibilities = frozenset(entry["visibility"] for entry in batch["files"].values())
            if allowed(visibilities):
                size += len(part.answers[position])
                if size > MAX_ANSWER_BYTES and found:
                    return found
                found.append(batch)
                if len(found) >= MAX_RESULTS:
                    return found
    return found


def _as_shown(copy: _Copy, batch: dict[str, Any]) -> dict[str, Any]:
    """Each file of `batch` with the visibility the index gives it now (what it was
    declared with, until it is indexed) and whether it is stored."""
    for entry in batch["files"].values():
        known = copy.file(entry["digest"])
        if known is not None:
            entry["visibility"] = known[0]
        entry["has_instances"] = known is not None and known[1]
    return batch
