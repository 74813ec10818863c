"""The consistency check across regions: copies deleted or corrupted behind the indexer's
back are noticed from listings and restored, the same bytes written again are kept,
regions added are filled and regions removed dropped, an unreachable region is left as it
is, and a frequent pass with nothing new reads no object; on both stores."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from indexer.index import read_index
from indexer.job import Indexer
from indexer.last_pass import MARKER_KEY
from indexer.local_store import SMALL_OBJECT, LocalStore
from indexer.management import DeleteInstances, apply
from indexer.s3_store import S3Store
from indexer.schema import IndexObject, blob_key, index_key
from indexer.stores import Regions, Store
from tests.conftest import make_local_store, make_system, unreachable
from tests.system import System, Uploaded


@pytest.fixture
def system(two_regions: Regions, tmp_path: Path) -> System:
    return make_system(two_regions, tmp_path)


def stored(system: System, size: int = 3000) -> Uploaded:
    """A file uploaded, verified and copied to every region."""
    upload = Uploaded("tool.tar.xz", os.urandom(size), "public")
    system.upload([upload])
    report = system.indexer.run_once(check=False)
    assert report.indexed == [upload.digest]
    assert indexed(system, upload.digest).instances == system.regions.names
    return upload


def index_region_only(system: System, tmp_path: Path) -> System:
    """A gateway and an indexer configured with the index region alone."""
    (tmp_path / "alone").mkdir()
    return make_system(system.regions.index, tmp_path / "alone")


def indexed(system: System, digest: str) -> IndexObject:
    found = read_index(system.regions.index, digest)
    assert found is not None
    return found[0]


def assert_served_everywhere(system: System, upload: Uploaded) -> None:
    index = indexed(system, upload.digest)
    assert index.instances == system.regions.names
    for store in system.regions:
        assert index.etags[store.region] == store.head(blob_key(upload.digest)).etag
        assert store.get(blob_key(upload.digest))[0] == upload.data
        assert system.download(upload.digest, region=store.region) == (302, upload.data)


def test_a_deleted_copy_is_restored(system: System) -> None:
    upload = stored(system)
    second = system.regions.names[1]
    system.regions[second].delete(blob_key(upload.digest))
    assert system.indexer.run_once(check=False).restored == []  # only the check looks
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    assert report.restored == [(upload.digest, second)]
    assert report.summary()["restored"] == 1
    assert_served_everywhere(system, upload)
    assert system.indexer.run_once().summary()["restored"] == 0


@pytest.mark.parametrize("region", [0, 1], ids=["index-region", "other-region"])
def test_a_corrupted_copy_is_restored(system: System, region: int) -> None:
    upload = stored(system)
    damaged = system.regions[system.regions.names[region]]
    damaged.put(blob_key(upload.digest), os.urandom(len(upload.data)))  # same size
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    assert report.restored == [(upload.digest, damaged.region)]
    assert_served_everywhere(system, upload)


def test_a_copy_corrupted_in_place_is_restored(system: System) -> None:
    """A large local copy is named by inode, mtime and size: bytes rewritten in place,
    the same size, are noticed too."""
    second = system.regions[system.regions.names[1]]
    if not isinstance(second, LocalStore):
        pytest.skip("S3 objects are never rewritten in place")
    upload = stored(system, size=SMALL_OBJECT + 1)
    with second.path(blob_key(upload.digest)).open("r+b") as stream:
        stream.seek(1000)
        stream.write(b"corrupted")
    report = system.indexer.run_once()
    assert report.restored == [(upload.digest, second.region)]
    assert_served_everywhere(system, upload)


def test_a_corrupted_only_copy_leaves_no_instances(system: System) -> None:
    upload = stored(system)
    for store in system.regions:
        store.put(blob_key(upload.digest), os.urandom(len(upload.data)))
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    assert report.restored == []
    assert indexed(system, upload.digest).instances == ()
    assert indexed(system, upload.digest).etags == {}
    assert system.download(upload.digest)[0] == 404
    again = system.upload([upload], message="again")
    assert "put_url" in again["files"]["tool.tar.xz"]
    system.indexer.run_once(check=False)
    assert_served_everywhere(system, upload)


def rewrite(store: Store, key: str, data: bytes) -> None:
    """`data` written over a copy, under a new ETag: into a new local file with the old
    one's times (as ``cp -a`` of the data directory does), or into an S3 object uploaded in
    parts (as ``aws s3 cp`` or a bucket restore writes it)."""
    if isinstance(store, S3Store):
        parts = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
        store.client.upload_fileobj(io.BytesIO(data), store.bucket, key, Config=parts)
        return
    assert isinstance(store, LocalStore)
    path = store.path(key)
    copied = path.with_name(".copied")  # hidden from listings until it replaces the copy
    copied.write_bytes(data)
    shutil.copystat(path, copied)
    os.replace(copied, path)


def test_the_same_bytes_under_a_new_etag_are_kept(system: System) -> None:
    """Every copy written again with the same bytes: each is hashed once, is the file, and
    has its new ETag recorded; none is dropped, and the next check reads no copy."""
    upload = stored(system, size=SMALL_OBJECT + 1)
    key = blob_key(upload.digest)
    before = indexed(system, upload.digest)
    for store in system.regions:
        rewrite(store, key, upload.data)
        assert store.head(key).etag != before.etags[store.region]
    report = system.indexer.run_once()
    assert report.repaired == report.restored == report.replicated == []
    assert sorted(report.reverified) == [(upload.digest, region) for region in system.regions.names]
    assert_served_everywhere(system, upload)
    after = indexed(system, upload.digest)
    assert (after.updated_at, after.verified_at) == (before.updated_at, before.verified_at)
    indexer, calls = counted(system)
    assert not indexer.run_once().changed
    assert [call for call in calls if call[1] == "open"] == []


def test_the_last_copy_is_hashed_before_it_is_dropped(system: System) -> None:
    """Under a new ETag, the only copy holding other bytes of the file's size is dropped
    only once hashed: the file then has no instances."""
    upload = stored(system, size=SMALL_OBJECT + 1)
    key = blob_key(upload.digest)
    for store in system.regions:
        rewrite(store, key, os.urandom(len(upload.data)))
    indexer, calls = counted(system)
    report = indexer.run_once()
    assert report.repaired == [upload.digest]
    assert report.reverified == report.restored == []
    assert indexed(system, upload.digest).instances == ()
    hashed = [region for region, name, read in calls if (name, read) == ("open", key)]
    assert hashed == list(system.regions.names)


def test_a_region_added_later_is_filled_by_the_next_check(system: System, tmp_path: Path) -> None:
    first, second = system.regions.names
    clock = [1_800_000_000.0]
    alone = index_region_only(system, tmp_path)
    alone.indexer = Indexer(alone.regions, clock=lambda: clock[0])
    upload = Uploaded("tool.tar.xz", os.urandom(3000), "public")
    alone.upload([upload])
    alone.indexer.run_once()
    before = indexed(system, upload.digest)
    assert before.instances == (first,)
    clock[0] += 3600
    report = Indexer(system.regions, clock=lambda: clock[0]).run_once()  # a fresh indexer
    assert report.replicated == [(upload.digest, second)]
    assert report.repaired == []
    after = indexed(system, upload.digest)
    assert_served_everywhere(system, upload)
    assert (after.updated_at, after.verified_at) == (before.updated_at, before.verified_at)


def test_a_removed_region_is_no_longer_offered(system: System, tmp_path: Path) -> None:
    first, second = system.regions.names
    upload = stored(system)
    before = indexed(system, upload.digest)
    alone = index_region_only(system, tmp_path)
    # A gateway that no longer has the region serves from the others at once.
    assert alone.download(upload.digest, region=second) == (302, upload.data)
    report = alone.indexer.run_once()
    assert report.repaired == [upload.digest]
    after = indexed(system, upload.digest)
    assert after.instances == (first,)
    assert list(after.etags) == [first]
    assert (after.updated_at, after.verified_at) == (before.updated_at, before.verified_at)
    assert alone.client.get(f"/file/sha512/{upload.digest}").json()["instances"] == [first]


def renamed(store: Store, region: str) -> Store:
    """The same bucket or directory under another region name."""
    if isinstance(store, S3Store):
        return S3Store(store.client, store.bucket, region=region)
    assert isinstance(store, LocalStore)
    return make_local_store(store.root, region=region)


def test_a_misnamed_region_strips_no_copy(system: System) -> None:
    """One run configured with the index region misnamed (``us-east1``) finds every file
    listed only in regions it does not know: none is dropped, since no region it knows
    holds a verified copy; with the name fixed, nothing is left to repair."""
    upload = stored(system)
    before = indexed(system, upload.digest)
    misnamed = Indexer(Regions([renamed(system.regions.index, "misnamed")]))
    report = misnamed.run_once()
    assert report.repaired == report.replicated == []
    assert indexed(system, upload.digest) == before
    assert not system.indexer.run_once().changed
    assert_served_everywhere(system, upload)


def test_objects_written_before_etags_adopt_the_listed_ones(system: System) -> None:
    upload = stored(system)
    store = system.regions.index
    key = index_key(upload.digest)
    older = json.loads(store.get(key)[0])
    del older["etags"]
    store.put(key, json.dumps(older).encode())
    assert indexed(system, upload.digest).etags == {}
    report = system.indexer.run_once()
    assert report.repaired == report.restored == report.replicated == []
    assert_served_everywhere(system, upload)
    after = indexed(system, upload.digest)
    assert (after.updated_at, after.verified_at) == (older["updated_at"], older["verified_at"])


def test_objects_written_before_etags_adopt_only_copies_of_the_file(system: System) -> None:
    """A copy of the right size whose bytes are not the file is hashed, dropped and
    restored, never trusted for its size."""
    upload = stored(system)
    second = system.regions[system.regions.names[1]]
    store = system.regions.index
    key = index_key(upload.digest)
    older = json.loads(store.get(key)[0])
    del older["etags"]
    store.put(key, json.dumps(older).encode())
    second.put(blob_key(upload.digest), os.urandom(len(upload.data)))
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    assert report.restored == [(upload.digest, second.region)]
    assert report.reverified == [(upload.digest, store.region)]
    assert_served_everywhere(system, upload)


def test_an_unreachable_region_is_neither_dropped_nor_filled(
    system: System, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The check goes on without a region it cannot reach (one error line says so); the
    uploads of the pass are finished, forgotten and searchable; the region is filled once
    it is back."""
    first, second = system.regions.names
    kept = stored(system)
    (tmp_path / "down").mkdir()
    down = make_system(
        Regions([system.regions.index, unreachable(system.regions[second])]), tmp_path / "down"
    )
    late = Uploaded("late.tar.xz", os.urandom(3000), "public")
    down.upload([late], message="during the outage")
    caplog.clear()
    report = down.indexer.run_once()
    assert report.indexed == [late.digest]
    assert report.unreachable == [second]
    assert report.is_partial
    assert report.repaired == report.replicated == []
    assert indexed(system, kept.digest).instances == (first, second)
    assert indexed(system, late.digest).instances == (first,)
    assert list(system.regions.index.list("intake/pending/")) == []
    [batch] = down.client.get("/upload", params={"q": "outage"}).json()["result"]
    assert [entry["has_instances"] for entry in batch["files"].values()] == [True]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and second in r.message]
    assert len(errors) == 1, [r.message for r in errors]
    report = system.indexer.run_once()  # the region is back
    assert report.replicated == [(late.digest, second)]
    assert_served_everywhere(system, kept)
    assert_served_everywhere(system, late)


def test_a_deleted_file_is_never_restored(system: System) -> None:
    upload = stored(system)
    apply(system.regions, upload.digest, [DeleteInstances("leaked")], by="admin")
    assert indexed(system, upload.digest).etags == {}
    left = system.regions[system.regions.names[1]]
    left.put(blob_key(upload.digest), upload.data)  # left behind (a copy racing the delete)
    report = system.indexer.run_once()
    assert report.removed_blobs == 1
    assert report.restored == report.replicated == []
    assert indexed(system, upload.digest).instances == ()
    for store in system.regions:
        assert list(store.list(blob_key(upload.digest))) == []
    assert system.download(upload.digest)[0] == 404


class CountingStore:
    """A store recording each call made to it: the operation and its key or prefix."""

    def __init__(self, store: Store, calls: list[tuple[str, str, str]]) -> None:
        self._store = store
        self._calls = calls
        self.region = store.region

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((self.region, name, str(args[0]) if args else ""))
            return attribute(*args, **kwargs)

        return call


def counted(system: System) -> tuple[Indexer, list[tuple[str, str, str]]]:
    calls: list[tuple[str, str, str]] = []
    return Indexer(Regions(CountingStore(store, calls) for store in system.regions)), calls


def test_a_frequent_pass_with_nothing_new_reads_no_object(system: System) -> None:
    stored(system)
    waiting = Uploaded("waiting.bin", os.urandom(10), "public")
    system.post([waiting])  # posted, never PUT: waits all along
    indexer, calls = counted(system)
    for _ in range(3):
        calls.clear()
        report = indexer.run_once(check=False)
        assert report.waiting == [waiting.digest]
        assert not report.changed
        # Its one write: the marker of its end, which gateways' heartbeats read.
        marker = [call for call in calls if call[1:] == ("put", MARKER_KEY)]
        assert len(marker) == 1, calls
        calls.remove(marker[0])
        assert {name for _, name, _ in calls} == {"list"}, calls
        # The pending records, and the staged uploads of each region: the waiting record
        # is not even read (a fresh process, as a cron'd `run --no-check` is).
        assert len(calls) == 1 + len(system.regions), calls


def test_a_checking_pass_lists_copies_instead_of_reading_them(system: System) -> None:
    for _ in range(3):
        stored(system)
    indexer, calls = counted(system)
    assert not indexer.run_once().changed
    blobs = [(region, name) for region, name, key in calls if key.startswith("sha512/")]
    assert sorted(blobs) == sorted((region, "list") for region in system.regions.names)


def test_a_copy_restored_after_the_listing_is_kept(system: System) -> None:
    """The listings are older than the index objects read after them: a copy missing from
    a listing is looked at again before it is dropped."""
    from indexer.consistency import ConsistencyCheck
    from indexer.replication import Replicator

    upload = stored(system)
    system.regions[system.regions.names[1]].delete(blob_key(upload.digest))

    def index_objects() -> Iterator[IndexObject]:
        assert Indexer(system.regions).run_once().restored  # another indexer, meanwhile
        yield indexed(system, upload.digest)

    repairs = ConsistencyCheck(system.regions, Replicator(system.regions)).run(index_objects())
    assert repairs.repaired == repairs.restored == []
    assert_served_everywhere(system, upload)
