"""Replication on the upload path: a verified upload is copied to every configured region
in the same pass, each copy verified before the index lists it; on both stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from indexer.index import read_index
from indexer.job import Indexer
from indexer.s3_store import S3Store
from indexer.schema import IndexObject, blob_key
from indexer.stores import Regions, Store, StoreUnavailable
from tests.conftest import make_system, unreachable
from tests.system import System, Uploaded


@pytest.fixture
def system(two_regions: Regions, tmp_path: Path) -> System:
    return make_system(two_regions, tmp_path)


def new(name: str = "tool.tar.xz", size: int = 3000) -> Uploaded:
    return Uploaded(name, os.urandom(size), "public")


def indexed(system: System, digest: str) -> IndexObject:
    found = read_index(system.regions.index, digest)
    assert found is not None
    return found[0]


def blob_path(store: Store, digest: str) -> str:
    """Where a signed URL of the store's copy points: the bucket's path (S3, path-style),
    or the region's path on the gateway (local)."""
    if isinstance(store, S3Store):
        return f"/{store.bucket}/{blob_key(digest)}"
    return f"/__store__/{store.region}/{blob_key(digest)}"


def recorded_etags(system: System, digest: str) -> dict[str, str]:
    return {store.region: store.head(blob_key(digest)).etag for store in system.regions}


def test_an_upload_is_copied_to_every_region(system: System) -> None:
    first, second = system.regions.names
    upload = new()
    system.upload([upload], query=f"?region={second}")
    report = system.indexer.run_once(check=False)  # the same pass, not the hourly check
    assert report.indexed == [upload.digest]
    assert report.replicated == [(upload.digest, first)]
    assert report.summary()["replicated"] == 1
    index = indexed(system, upload.digest)
    assert index.instances == tuple(sorted((first, second)))
    assert index.etags == recorded_etags(system, upload.digest)
    for store in system.regions:
        response = system.redirect(upload.digest, region=store.region)
        assert response.status_code == 302
        assert urlsplit(response.headers["location"]).path == blob_path(store, upload.digest)
        assert system.download(upload.digest, region=store.region) == (302, upload.data)
        assert store.get(blob_key(upload.digest))[0] == upload.data
    assert system.client.get(f"/file/sha512/{upload.digest}").json()["instances"] == sorted(
        (first, second)
    )


def test_a_bad_copy_is_deleted_and_not_listed(system: System, monkeypatch: Any) -> None:
    first, second = system.regions.names
    destination = system.regions[second]
    copy_from = destination.copy_from

    def copy_badly(source: Store, key: str, *, if_match: str | None = None) -> Any:
        info = copy_from(source, key, if_match=if_match)
        return destination.put(key, os.urandom(info.size))  # damaged on the way

    monkeypatch.setattr(destination, "copy_from", copy_badly)
    upload = new()
    system.upload([upload])
    report = system.indexer.run_once(check=False)
    assert report.indexed == [upload.digest]
    assert report.replicated == []
    assert indexed(system, upload.digest).instances == (first,)
    assert not list(destination.list(blob_key(upload.digest)))
    assert system.download(upload.digest, region=second) == (302, upload.data)  # from first
    monkeypatch.undo()
    assert system.indexer.run_once().replicated == [(upload.digest, second)]
    assert indexed(system, upload.digest).instances == (first, second)


def test_an_unreachable_region_does_not_hold_uploads_back(system: System, monkeypatch: Any) -> None:
    first, second = system.regions.names
    attempts = []

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise StoreUnavailable(second, "unreachable in this test")

    monkeypatch.setattr(system.regions[second], "copy_from", unreachable)
    uploads = [new("a.tar.xz"), new("b.tar.xz")]
    system.upload(uploads)
    report = system.indexer.run_once(check=False)
    assert sorted(report.indexed) == sorted(upload.digest for upload in uploads)
    assert report.replicated == []
    assert len(attempts) == 1  # not tried again in the same pass
    for upload in uploads:
        assert indexed(system, upload.digest).instances == (first,)
        assert system.download(upload.digest) == (302, upload.data)
    monkeypatch.undo()
    filled = system.indexer.run_once().replicated
    assert sorted(filled) == sorted((upload.digest, second) for upload in uploads)


def test_a_region_down_holds_back_no_upload(two_regions: Regions, tmp_path: Path) -> None:
    """With a region other than the index's down, a batch naming a stored file is answered
    from the index region's copy, and the pass indexes every upload."""
    first, second = two_regions.names
    # The index region sorts last: `instances` names the region that goes down first.
    index, other = two_regions[second], two_regions[first]
    system = make_system(Regions([index, other]), tmp_path)
    stored, late = new("stored.tar.xz"), new("late.tar.xz")
    while late.digest < stored.digest:  # the stored file's pending record is handled first
        late = new("late.tar.xz")
    system.upload([stored])
    system.indexer.run_once(check=False)
    assert indexed(system, stored.digest).instances == (first, second)
    (tmp_path / "down").mkdir()
    down = make_system(Regions([index, unreachable(other)]), tmp_path / "down")
    again = down.upload([Uploaded("again.tar.xz", stored.data, "public")], message="again")
    assert "put_url" not in again["files"]["again.tar.xz"]  # stored: nothing to upload
    down.upload([late])
    report = down.indexer.run_once(check=False)
    assert report.recorded == [stored.digest]
    assert report.indexed == [late.digest]
    assert report.unreachable == [first]
    assert list(index.list("intake/pending/")) == []
    assert down.download(late.digest) == (302, late.data)


def test_an_upload_staged_in_an_unreachable_region_waits(system: System) -> None:
    """Its pending record is set aside for the pass (the others are indexed), and indexed
    once the region is back."""
    first, second = system.regions.names
    there, here = new("there.tar.xz"), new("here.tar.xz")
    system.upload([there], query=f"?region={second}")
    system.upload([here])
    down = Indexer(Regions([system.regions.index, unreachable(system.regions[second])]))
    report = down.run_once(check=False)
    assert report.indexed == [here.digest]
    assert report.waiting == [there.digest]  # its staged bytes could not be listed
    assert report.unreachable == [second]
    assert report.is_partial
    report = down.run_once()  # a checking pass reads it: set aside
    assert report.deferred == [there.digest]
    assert system.download(there.digest)[0] == 404
    report = system.indexer.run_once(check=False)
    assert report.indexed == [there.digest]
    assert indexed(system, there.digest).instances == (first, second)


def test_a_pass_killed_before_replicating_is_finished_by_the_next(
    system: System, monkeypatch: Any
) -> None:
    first, second = system.regions.names

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(system.indexer._replicator, "fill", killed)
    upload = new()
    system.upload([upload])
    with pytest.raises(KeyboardInterrupt):
        system.indexer.run_once(check=False)
    assert indexed(system, upload.digest).instances == (first,)
    monkeypatch.undo()
    report = system.indexer.run_once(check=False)  # the pending record is still there
    assert report.recorded == [upload.digest]
    assert report.replicated == [(upload.digest, second)]
    assert indexed(system, upload.digest).instances == (first, second)


def test_replication_leaves_the_file_times_alone(system: System, monkeypatch: Any) -> None:
    """Only instances and etags change: the times say when the file changed."""
    clock = [1_800_000_000.0]
    indexer = Indexer(Regions([system.regions.index]), clock=lambda: clock[0])
    upload = new()
    system.upload([upload])
    indexer.run_once()
    before = indexed(system, upload.digest)
    clock[0] += 3600
    report = Indexer(system.regions, clock=lambda: clock[0]).run_once()
    assert report.replicated == [(upload.digest, system.regions.names[1])]
    after = indexed(system, upload.digest)
    assert after.instances == system.regions.names
    assert (after.updated_at, after.verified_at) == (before.updated_at, before.verified_at)
