"""The change feed: which catalog shards changed, in order, for gateway replicas to follow.

Every writer of the catalog (the gateway creating a batch, the indexer, the
management operations, imports) appends one entry after writing its shards:
``feed/<seq>.json`` holding ``{"seq", "at", "shards"}``, created only where
absent, so concurrent writers make one sequence without gaps.
``feed/head.json`` names a recent sequence number, and only ever moves
forward: where a writer starts probing, and how a reader notices entries
trimmed before it read them.

A replica that has applied entry ``n`` reads ``n + 1`` (one small object) to
learn of a change, and then only the shards it names: it never re-reads the
whole catalog to notice one change. The feed is a notification channel, not
state: it lives outside ``catalog/``, and losing it costs a replica one full
reload. The consistency check trims entries far behind the head.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from indexer.schema import utc_timestamp
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, StoreUnavailable, put_over
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

FEED_PREFIX = "feed/"
HEAD_KEY = f"{FEED_PREFIX}head.json"
KEEP = 10_000  # entries kept behind the head; a replica further behind reloads everything
MAX_PROBES = 64


class FeedGap(Exception):
    """Entries a reader has not applied were trimmed (or are unreadable): reload everything."""


@dataclass(frozen=True, slots=True)
class Change:
    """One feed entry: the catalog shards one write changed."""

    seq: int
    shards: tuple[str, ...]


def entry_key(seq: int) -> str:
    return f"{FEED_PREFIX}{seq:012d}.json"


class Feed:
    """Appends to and reads the change feed of one store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def head(self) -> int:
        """The sequence number the head names (0 for an empty feed)."""
        return self._head()[0]

    def _head(self) -> tuple[int, str | None]:
        try:
            raw, info = self._store.get(HEAD_KEY)
        except ObjectNotFound:
            return 0, None
        try:
            seq = loads_strict(raw)["seq"]
        except (StrictJsonError, KeyError, TypeError):
            logger.error("the feed head is malformed; it will be rewritten")
            return 0, info.etag
        return (seq if type(seq) is int and seq >= 0 else 0), info.etag

    def append(self, shards: Iterable[str]) -> int | None:
        """Record that `shards` changed; the entry's sequence number (None when none did)."""
        names = tuple(sorted(set(shards)))
        if not names:
            return None
        seq = self.head() + 1
        for probes in range(2 * MAX_PROBES):
            if probes == MAX_PROBES:
                seq = self._last() + 1  # the head lags far behind: find the end once
            data = {"seq": seq, "at": utc_timestamp(self._clock()), "shards": list(names)}
            try:
                self._store.put(
                    entry_key(seq),
                    json.dumps(data, sort_keys=True, separators=(",", ":")).encode(),
                    if_none_match=True,
                    content_type="application/json",
                )
            except PreconditionFailed:
                seq += 1  # another writer took it: the next one
                continue
            self._advance_head(seq)
            return seq
        raise StoreUnavailable(self._store.region, "the change feed is too contended")

    def _advance_head(self, seq: int) -> None:
        """Move the head forward to `seq` (never back: a slower writer leaves it be)."""
        for _ in range(MAX_PROBES):
            current, etag = self._head()
            if current >= seq:
                return
            try:
                put_over(self._store, HEAD_KEY, json.dumps({"seq": seq}).encode(), etag=etag)
                return
            except PreconditionFailed:
                continue

    def _last(self) -> int:
        """The last entry's sequence number, from a listing (the feed keeps at most KEEP)."""
        numbers = [_seq_of(info.key) for info in self._store.list(FEED_PREFIX)]
        return max((number for number in numbers if number is not None), default=0)

    def read(self, seq: int) -> Change | None:
        """Entry `seq`, or None when it is not written yet.

        Raises :class:`FeedGap` when it was trimmed (the head is past it), the
        feed was started over (the entry before it is gone too), or it cannot
        be read.
        """
        try:
            raw, _ = self._store.get(entry_key(seq))
        except ObjectNotFound:
            head = self.head()
            if head >= seq:
                raise FeedGap(f"feed entry {seq} was trimmed") from None
            # The head names the entry before: nothing new. Further behind, it lags (a
            # writer between its entry and the head) or the feed was started over.
            if head < seq - 1 and not self._exists(seq - 1):
                raise FeedGap(f"the feed was started over before entry {seq}") from None
            return None
        try:
            data = loads_strict(raw)
            shards = data["shards"]
            if data["seq"] != seq or not all(is_shard(shard) for shard in shards):
                raise TypeError("wrong fields")
        except (StrictJsonError, KeyError, TypeError) as exc:
            raise FeedGap(f"feed entry {seq} is malformed: {exc}") from None
        return Change(seq, tuple(shards))

    def _exists(self, seq: int) -> bool:
        try:
            self._store.head(entry_key(seq))
        except ObjectNotFound:
            return False
        return True

    def trim(self, keep: int = KEEP) -> int:
        """Delete entries more than `keep` behind the head; how many."""
        floor = self.head() - keep
        removed = 0
        for info in self._store.list(FEED_PREFIX):
            seq = _seq_of(info.key)
            if seq is not None and seq < floor:
                self._store.delete(info.key)
                removed += 1
        return removed


def _seq_of(key: str) -> int | None:
    name = key.removeprefix(FEED_PREFIX).removesuffix(".json")
    return int(name) if name.isdigit() else None


def is_shard(name: object) -> bool:
    """A shard name a catalog key can be made of (``files/abc``, ``batches/000012``)."""
    kind, _, suffix = name.partition("/") if isinstance(name, str) else ("", "", "")
    if kind == "files":
        return len(suffix) == 3 and all(char in "0123456789abcdef" for char in suffix)
    return kind == "batches" and len(suffix) == 6 and suffix.isdigit()
