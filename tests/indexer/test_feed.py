"""The change feed: one gap-free sequence under concurrent writers, and readers that notice
what they cannot follow."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from indexer.feed import HEAD_KEY, Change, Feed, FeedGap, entry_key


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_store")


def test_concurrent_writers_make_one_sequence(store: Any) -> None:
    feed = Feed(store)
    taken: list[int | None] = []

    def write(n: int) -> None:
        for round_ in range(5):
            taken.append(Feed(store).append([f"files/{n:03x}", f"batches/{round_:06d}"]))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(1, 21))  # type: ignore[type-var]
    changes = [feed.read(seq) for seq in range(1, 21)]
    assert all(isinstance(change, Change) for change in changes)
    assert feed.read(21) is None


def test_nothing_to_announce_writes_nothing(store: Any) -> None:
    assert Feed(store).append([]) is None
    assert list(store.list("feed/")) == []


def test_a_trimmed_entry_is_a_gap(store: Any) -> None:
    feed = Feed(store)
    for n in range(5):
        feed.append([f"files/{n:03x}"])
    assert feed.trim(keep=2) == 2
    with pytest.raises(FeedGap):
        feed.read(1)
    assert feed.read(3) == Change(3, ("files/002",))


def test_a_feed_started_over_is_a_gap(store: Any) -> None:
    feed = Feed(store)
    for n in range(100):
        store.put(entry_key(n + 1), b'{"seq": %d, "shards": []}' % (n + 1))
    store.put(HEAD_KEY, b'{"seq": 100}')
    assert feed.read(101) is None
    for info in list(store.list("feed/")):
        store.delete(info.key)
    feed.append(["files/abc"])
    with pytest.raises(FeedGap):
        feed.read(101)


def test_a_malformed_entry_is_a_gap(store: Any) -> None:
    store.put(entry_key(1), b"not json")
    with pytest.raises(FeedGap):
        Feed(store).read(1)


def test_a_head_far_behind_does_not_jam_writers(store: Any) -> None:
    feed = Feed(store)
    for n in range(100):
        feed.append([f"files/{n:03x}"])
    store.put(HEAD_KEY, b'{"seq": 3}')  # left behind: a writer stalled before its head
    assert feed.append(["files/fff"]) == 101
    assert feed.head() == 101
    assert feed.read(102) is None


def test_the_head_never_moves_back(store: Any) -> None:
    feed = Feed(store)
    for _ in range(3):
        feed.append(["files/abc"])
    feed._advance_head(1)  # a slower writer, done late
    assert feed.head() == 3
