"""The index cache under concurrency: shared loads, cancellation, errors, invalidations."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.index_cache import IndexCache
from indexer.schema import index_key
from indexer.stores import StoreUnavailable
from tests.gateway.conftest import Gateway, random_bytes


class SlowStore:
    """A real store whose reads wait until released, counting them."""

    def __init__(self, store) -> None:
        self._store = store
        self.region = store.region
        self.release = threading.Event()
        self.gets = 0
        self.fail = False

    def get(self, key: str):
        self.gets += 1
        self.release.wait(5)
        if self.fail:
            raise StoreUnavailable(self.region, "down")
        return self._store.get(key)


def make_cache(store) -> IndexCache:
    return IndexCache(store, ttl=60, negative_ttl=60, max_entries=10)


def test_concurrent_misses_share_one_read(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    slow = SlowStore(gateway.regions.index)
    cache = make_cache(slow)

    async def scenario() -> None:
        tasks = [asyncio.create_task(cache.get(digest)) for _ in range(10)]
        await asyncio.sleep(0.05)
        slow.release.set()
        results = await asyncio.gather(*tasks)
        assert {result.digest for result in results} == {digest}

    asyncio.run(scenario())
    assert slow.gets == 1


def test_a_cancelled_loader_does_not_fail_the_others(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    slow = SlowStore(gateway.regions.index)
    cache = make_cache(slow)

    async def scenario() -> None:
        loader = asyncio.create_task(cache.get(digest))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(cache.get(digest))
        await asyncio.sleep(0.05)
        loader.cancel()
        await asyncio.sleep(0.05)
        slow.release.set()
        assert (await waiter).digest == digest
        with pytest.raises(asyncio.CancelledError):
            await loader

    asyncio.run(scenario())


def test_errors_reach_every_waiter_and_are_not_cached(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    slow = SlowStore(gateway.regions.index)
    slow.fail = True
    cache = make_cache(slow)

    async def scenario() -> None:
        tasks = [asyncio.create_task(cache.get(digest)) for _ in range(3)]
        await asyncio.sleep(0.05)
        slow.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, StoreUnavailable) for result in results)
        slow.fail = False
        assert (await cache.get(digest)).digest == digest

    asyncio.run(scenario())
    assert slow.gets == 2


def test_entries_are_bounded(gateway: Gateway) -> None:
    cache = IndexCache(gateway.regions.index, ttl=60, negative_ttl=60, max_entries=3)

    async def scenario() -> None:
        for number in range(10):
            await cache.get(f"{number:0128x}")

    asyncio.run(scenario())
    assert len(cache._entries) == 3


def test_an_index_write_drops_a_negative_answer(gateway: Gateway) -> None:
    cache = make_cache(gateway.regions.index)
    data = random_bytes()
    digest = gateway.add(data)
    gateway.regions.index.delete(index_key(digest))
    assert asyncio.run(cache.get(digest)) is None
    assert gateway.add(data) == digest  # indexed again, behind the cache's back
    assert asyncio.run(cache.get(digest)) is None  # remembered
    cache.invalidate(digest)  # what the embedded indexer does at its index write
    found = asyncio.run(cache.get(digest))
    assert found is not None
    assert found.digest == digest


@pytest.mark.parametrize(("written", "reads"), [("same", 2), ("other", 1)])
def test_an_index_write_during_a_read_stales_that_digest_only(
    gateway: Gateway, written: str, reads: int
) -> None:
    """A read begun before its digest's index write is neither remembered nor shared with
    requests after the write; a write of another digest changes nothing."""
    digest = gateway.add(random_bytes())
    other = gateway.add(random_bytes())
    slow = SlowStore(gateway.regions.index)
    cache = make_cache(slow)

    async def scenario() -> None:
        early = asyncio.create_task(cache.get(digest))
        await asyncio.sleep(0.05)
        # The write lands while the read is in flight, from the indexer's thread.
        invalidated = digest if written == "same" else other
        thread = threading.Thread(target=cache.invalidate, args=(invalidated,))
        thread.start()
        thread.join()
        late = asyncio.create_task(cache.get(digest))
        await asyncio.sleep(0.05)
        slow.release.set()
        results = await asyncio.gather(early, late)
        assert {result.digest for result in results} == {digest}

    asyncio.run(scenario())
    assert slow.gets == reads
    assert cache.peek(digest) is not None  # the last read is remembered
    asyncio.run(cache.get(digest))
    assert slow.gets == reads
