"""The change feed: which catalog shards changed, in order, for gateway replicas to follow.

Every writer of the catalog (the gateway creating a batch, the indexer, the
management operations, imports) appends one entry after writing its shards:
``feed/<seq>.json`` holding ``{"seq", "at", "shards"}``, created only where
absent, so concurrent writers make one sequence without gaps.
``feed/head.json`` names a recent sequence number: a hint a writer starts
probing from and a reader uses to notice entries trimmed before it read them.

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
from indexer.stores import ObjectNotFound, PreconditionFailed, Store
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
        try:
            raw, _ = self._store.get(HEAD_KEY)
            seq = loads_strict(raw)["seq"]
        except ObjectNotFound:
            return 0
        except (StrictJsonError, KeyError, TypeError):
            logger.error("the feed head is malformed; starting from 0")
            return 0
        return seq if type(seq) is int and seq >= 0 else 0

    def append(self, shards: Iterable[str]) -> int | None:
        """Record that `shards` changed; the entry's sequence number (None when none did)."""
        names = tuple(sorted(set(shards)))
        if not names:
            return None
        seq = self.head() + 1
        for _ in range(MAX_PROBES):
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
            # A hint only: a slower writer may set it back a little, which readers allow for.
            self._store.put(
                HEAD_KEY, json.dumps({"seq": seq}).encode(), content_type="application/json"
            )
            return seq
        logger.warning("the change feed kept moving; replicas see this change at their next reload")
        return None

    def read(self, seq: int) -> Change | None:
        """Entry `seq`, or None when it is not written yet.

        Raises :class:`FeedGap` when it was trimmed (the head is past it), the
        feed was started over (the head far behind it), or it cannot be read.
        """
        try:
            raw, _ = self._store.get(entry_key(seq))
        except ObjectNotFound:
            head = self.head()
            if head > seq:
                raise FeedGap(f"feed entry {seq} was trimmed") from None
            if head < seq - 1 - MAX_PROBES:  # a head set back by slow writers lags less
                raise FeedGap(f"the feed was started over at {head}") from None
            return None
        try:
            data = loads_strict(raw)
            shards = data["shards"]
            if data["seq"] != seq or not all(isinstance(shard, str) for shard in shards):
                raise TypeError("wrong fields")
        except (StrictJsonError, KeyError, TypeError) as exc:
            raise FeedGap(f"feed entry {seq} is malformed: {exc}") from None
        return Change(seq, tuple(shards))

    def trim(self, keep: int = KEEP) -> int:
        """Delete entries more than `keep` behind the head; how many."""
        floor = self.head() - keep
        removed = 0
        for info in self._store.list(FEED_PREFIX):
            name = info.key.removeprefix(FEED_PREFIX).removesuffix(".json")
            if name.isdigit() and int(name) < floor:
                self._store.delete(info.key)
                removed += 1
        return removed
