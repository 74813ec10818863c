"""The live catalog: searches see a change within the cache bound, on every replica, and
neither a search nor an update costs what the whole catalog would."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from indexer.catalog import Catalog, file_shard, shard_key
from indexer.feed import Feed, entry_key
from indexer.index import update_index
from indexer.intake import Batch
from tests.conftest import make_system
from tests.gateway.auth_helpers import hawk
from tests.recording_store import RecordingStore
from tests.system import BASE, System, Uploaded


def replica(store: Any, tmp_path: Path, **settings: Any) -> System:
    """Another gateway over the same store."""
    tmp_path.mkdir()
    return make_system(store, tmp_path, **settings)


def search(system: System, path: str) -> list[dict[str, Any]]:
    answer = system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_a_batch_is_found_right_after_post(system: System) -> None:
    upload = Uploaded("gcc-13.tar.xz", os.urandom(50), "public")
    posted = system.post([upload], message="GCC 13 for linux64").json()["result"]
    # No indexer pass: the POST itself made the batch searchable.
    [found] = search(system, "/upload?q=gcc%2013")
    assert found["id"] == posted["id"]
    assert found["files"]["gcc-13.tar.xz"]["has_instances"] is False
    shown = search_one(system, f"/upload/{posted['id']}")
    assert shown["files"]["gcc-13.tar.xz"]["has_instances"] is False
    assert search(system, "/file?q=gcc-13") == []  # not stored yet

    assert system.put(posted["files"]["gcc-13.tar.xz"]["put_url"], upload.data) == 200
    system.indexer.run_once(check=False)  # a pass, no consistency check
    [found] = search(system, "/upload?q=gcc%2013")
    assert found["files"]["gcc-13.tar.xz"]["has_instances"] is True
    [stored] = search(system, "/file?q=GCC-13")
    assert stored["digest"] == upload.digest
    assert search(system, f"/file?q={upload.digest[:8]}") == [stored]


def search_one(system: System, path: str) -> dict[str, Any]:
    answer = system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_another_replica_sees_a_change_within_its_bound(system: System, tmp_path: Path) -> None:
    other = replica(system.regions.index, tmp_path / "other", index_cache_seconds=1)
    assert search(other, "/upload?q=late%20batch") == []  # loaded, and cached for 1 s
    system.post([Uploaded("late.bin", os.urandom(10), "public")], message="late batch")
    deadline = time.monotonic() + 20
    while not search(other, "/upload?q=late%20batch") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert search(other, "/upload?q=late%20batch")


def test_a_replica_reads_only_what_a_change_names(system: System, tmp_path: Path) -> None:
    first = [Uploaded(f"first-{n}.bin", os.urandom(20), "public") for n in range(12)]
    system.upload(first, message="first batch")
    system.indexer.run_once(check=False)
    recording = RecordingStore(system.regions.index)
    other = replica(recording, tmp_path / "replica")
    assert len(search(other, "/file?q=first-")) == 12
    assert recording.keys("list") == ["catalog/"]  # the first search loads the catalog

    recording.calls.clear()
    assert len(search(other, "/file?q=first-")) == 12
    assert all(key.startswith("feed/") for key in recording.keys("get"))  # nothing new
    assert len(recording.calls) <= 2

    late = Uploaded("late.bin", os.urandom(20), "public")
    system.upload([late], message="late batch")
    system.indexer.run_once(check=False)
    recording.calls.clear()
    assert [entry["digest"] for entry in search(other, "/file?q=late.bin")] == [late.digest]
    shards = {key for key in recording.keys("get") if key.startswith("catalog/")}
    assert shards <= {shard_key(file_shard(late.digest)), "catalog/batches/000000.json"}
    assert recording.keys("list") == []


def test_a_fresh_replica_answers_searches_from_memory(system: System, tmp_path: Path) -> None:
    system.upload([Uploaded("a.bin", os.urandom(20), "public")], message="one")
    system.indexer.run_once(check=False)
    recording = RecordingStore(system.regions.index)
    other = replica(recording, tmp_path / "replica", index_cache_seconds=60)
    search(other, "/file?q=a.bin")
    recording.calls.clear()
    for query in ("/file?q=a.bin", "/upload?q=one", "/file?q=nothing"):
        search(other, query)
    assert recording.calls == []


def test_a_replica_behind_a_trimmed_feed_reloads(system: System, tmp_path: Path) -> None:
    other = replica(system.regions.index, tmp_path / "replica")
    assert search(other, "/upload?q=batch") == []
    for n in range(3):
        system.post([Uploaded(f"{n}.bin", os.urandom(10), "public")], message=f"batch {n}")
    Feed(system.regions.index).trim(keep=0)
    assert len(search(other, "/upload?q=batch")) == 3


def test_an_update_writes_a_bounded_number_of_objects(system: System) -> None:
    uploads = [Uploaded(f"{n}.bin", os.urandom(20), "public") for n in range(40)]
    system.upload(uploads, message="many")
    system.indexer.run_once(check=False)
    one = uploads[0].digest
    update_index(system.regions.index, one, lambda found: found.with_changes(visibility="internal"))
    recording = RecordingStore(system.regions.index)
    Catalog(recording).update([one], [])  # as a management change does
    assert recording.keys("list") == []
    shard_reads = [key for key in recording.keys("get") if key.startswith("catalog/")]
    assert shard_reads == [shard_key(file_shard(one))]
    assert [key.split("/")[0] for key in recording.writes()] == ["catalog", "feed", "feed"]


def test_writers_of_one_shard_at_once_lose_nothing(system: System) -> None:
    store = system.regions.index
    for batch_id in range(1, 49):
        batch = Batch(
            id=batch_id,
            author="uploader",
            uploaded="2026-11-29T00:00:00Z",
            message=f"batch {batch_id}",
            region=store.region,
            files={},
        )
        store.put(batch.key, batch.to_json())
    threads = [
        threading.Thread(target=Catalog(store).update, args=([], [batch_id]))
        for batch_id in range(1, 49)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = [entry["id"] for entry in Catalog(store).shard("batches/000000")]
    assert listed == list(range(1, 49))


def test_a_change_no_replica_was_told_of_is_swept_by_the_check(
    system: System, tmp_path: Path
) -> None:
    """A writer killed between its shard and its feed entry: the consistency check tells
    the replicas."""
    upload = Uploaded("a.bin", os.urandom(20), "public")
    system.upload([upload], message="one")
    system.indexer.run_once()  # a check: the sweep's first view
    other = replica(system.regions.index, tmp_path / "replica")
    assert len(search(other, "/file?q=a.bin")) == 1
    store = system.regions.index
    update_index(store, upload.digest, lambda found: found.with_changes(visibility="internal"))
    Catalog(store, feed=SilentFeed(store)).update([upload.digest], [])  # killed before the feed
    anonymous = other.client.get("/file", params={"q": "a.bin"}).json()["result"]
    assert len(anonymous) == 1  # not told: still shown as public
    system.indexer.run_once()
    assert other.client.get("/file", params={"q": "a.bin"}).json()["result"] == []


class SilentFeed(Feed):
    def append(self, shards: Any) -> int | None:
        return None


def test_a_file_made_internal_takes_its_batch_out_of_sight(system: System) -> None:
    from tests.gateway.test_manage import patch

    upload = Uploaded("toolchain.tar.xz", os.urandom(30), "public")
    batch_id = system.upload([upload], message="toolchain")["id"]
    system.indexer.run_once(check=False)
    anonymous = system.client
    assert len(anonymous.get("/upload", params={"q": "toolchain"}).json()["result"]) == 1
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, upload.digest, flip).status_code == 200
    assert anonymous.get("/upload", params={"q": "toolchain"}).json()["result"] == []
    assert anonymous.get(f"/upload/{batch_id}").status_code == 403
    [shown] = search(system, "/upload?q=toolchain")  # the reader may see internal files
    assert shown["files"]["toolchain.tar.xz"]["visibility"] == "internal"
    assert search_one(system, f"/upload/{batch_id}")["files"]["toolchain.tar.xz"] == {
        "size": 30,
        "digest": upload.digest,
        "algorithm": "sha512",
        "visibility": "internal",
        "has_instances": True,
    }


def test_a_feed_entry_naming_no_shard_makes_the_replica_reload(
    system: System, tmp_path: Path
) -> None:
    other = replica(system.regions.index, tmp_path / "replica")
    assert search(other, "/upload?q=later") == []
    store = system.regions.index
    head = Feed(store).head()
    store.put(entry_key(head + 1), b'{"seq": %d, "shards": ["files/.."]}' % (head + 1))
    store.put("feed/head.json", b'{"seq": %d}' % (head + 1))
    system.post([Uploaded("later.bin", os.urandom(10), "public")], message="later")
    assert len(search(other, "/upload?q=later")) == 1


def test_a_write_during_a_refresh_is_not_forgotten(system: System) -> None:
    """A replica's own write while it refreshes: its next read follows the feed again."""
    import asyncio

    from gateway.catalog_view import CatalogView

    view = CatalogView(Catalog(system.regions.index), ttl=60)

    class Writing(Feed):
        def read(self, seq: int) -> Any:
            view.invalidate()  # a POST on this replica, meanwhile
            return super().read(seq)

    view._catalog.feed = Writing(system.regions.index)  # type: ignore[attr-defined]
    asyncio.run(view.refresh())
    assert view._fresh_until == float("-inf")


def test_a_replica_far_behind_reloads_without_following_it_all(
    system: System, monkeypatch: Any
) -> None:
    import asyncio

    from gateway import catalog_view

    monkeypatch.setattr(catalog_view, "MAX_FOLLOWED", 30)
    recording = RecordingStore(system.regions.index)
    view = catalog_view.CatalogView(Catalog(recording), ttl=0)
    asyncio.run(view.refresh())
    feed = Feed(system.regions.index)
    for n in range(60):
        feed.append([f"files/{n:03x}"])
    recording.calls.clear()
    asyncio.run(view.refresh())
    entries = [key for key in recording.keys("get") if key.startswith("feed/0")]
    assert len(entries) <= catalog_view.CHECK_BEHIND
    assert "catalog/" in recording.keys("list")  # reloaded
