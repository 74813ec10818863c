"""Uploads end to end on both stores: batch, signed PUT, verification, download."""

from __future__ import annotations

import os
import threading

import pytest

from indexer.index import read_index
from indexer.intake import PENDING, STAGING
from indexer.job import Indexer
from indexer.schema import blob_key
from tests.system import System, Uploaded


def new(name: str = "file.bin", visibility: str = "public", size: int = 3000) -> Uploaded:
    return Uploaded(name, os.urandom(size), visibility)


def leftovers(system: System) -> list[str]:
    store = system.regions.index
    return sorted(info.key for info in [*store.list(PENDING), *store.list(STAGING)])


@pytest.mark.parametrize("visibility", ["public", "internal"])
def test_upload_then_download(system: System, visibility: str) -> None:
    upload = new(visibility=visibility)
    result = system.upload([upload], message="clang 17")
    assert result["author"] == "uploader"
    assert isinstance(result["id"], int)
    assert result["message"] == "clang 17"
    entry = result["files"]["file.bin"]
    assert entry["put_url"]
    assert {k: entry[k] for k in ("size", "digest", "algorithm", "visibility")} == upload.entry()
    # Not downloadable until verified
    assert system.download(upload.digest, client_id="reader")[0] == 404
    report = system.indexer.run_once()
    assert report.indexed == [upload.digest]
    assert system.download(upload.digest, client_id="reader") == (302, upload.data)
    anonymous = system.download(upload.digest)
    assert anonymous == ((302, upload.data) if visibility == "public" else (403, b""))
    assert leftovers(system) == []
    index, _ = read_index(system.regions.index, upload.digest)
    assert index.uploads[0].batch_id == result["id"]
    assert index.uploads[0].filename == "file.bin"
    assert index.uploads[0].author == "uploader"


def test_wrong_bytes_are_never_served(system: System) -> None:
    declared = new()
    result = system.post([declared]).json()["result"]
    url = result["files"]["file.bin"]["put_url"]
    wrong = os.urandom(len(declared.data))
    assert system.put(url, wrong) == 200  # same size, other bytes
    report = system.indexer.run_once()
    assert report.failed == [declared.digest]
    assert system.download(declared.digest, client_id="reader")[0] == 404
    assert leftovers(system) == []
    failures = system.indexer.failures()
    assert failures[0]["digest"] == declared.digest
    assert "sha512 mismatch" in failures[0]["reason"]


def test_wrong_size_is_refused_by_the_signature(system: System) -> None:
    declared = new()
    url = system.post([declared]).json()["result"]["files"]["file.bin"]["put_url"]
    assert system.put(url, declared.data + b"extra") == 403
    assert system.indexer.run_once().waiting == [declared.digest]
    assert system.put(url, declared.data) == 200
    assert system.indexer.run_once().indexed == [declared.digest]


def test_bytes_replaced_after_verification_are_never_served(system: System) -> None:
    declared = new()
    url = system.post([declared]).json()["result"]["files"]["file.bin"]["put_url"]
    assert system.put(url, declared.data) == 200
    system.indexer.run_once()
    assert system.put(url, os.urandom(len(declared.data))) == 200  # the URL still lives
    system.indexer.run_once()
    assert system.download(declared.digest, client_id="reader") == (302, declared.data)
    assert system.regions.index.get(blob_key(declared.digest))[0] == declared.data


def test_bytes_put_during_verification_are_never_copied(system: System, monkeypatch) -> None:
    """What the indexer verifies is what it copies, even when the uploader PUTs again (with
    bytes of the same size, or an MD5 collision: same ETag) while it verifies."""
    declared = new()
    url = system.post([declared]).json()["result"]["files"]["file.bin"]["put_url"]
    assert system.put(url, declared.data) == 200
    store = system.regions.index
    original_copy = store.copy
    replaced = []

    def copy_then_put_again(source: str, destination: str, **conditions):
        info = original_copy(source, destination, **conditions)
        if source.startswith("staging/"):
            assert system.put(url, os.urandom(len(declared.data))) == 200
            replaced.append(source)
        return info

    monkeypatch.setattr(store, "copy", copy_then_put_again)
    report = system.indexer.run_once(check=False)
    monkeypatch.undo()
    assert replaced
    assert report.indexed == [declared.digest]
    assert system.download(declared.digest, client_id="reader") == (302, declared.data)
    assert store.get(blob_key(declared.digest))[0] == declared.data
    system.indexer.run_once()
    assert leftovers(system) == []
    assert list(store.list("verifying/")) == []


def test_reupload_gets_no_put_url(system: System) -> None:
    upload = new()
    first = system.upload([upload])
    system.indexer.run_once()
    second = system.post([upload], message="again").json()["result"]
    assert "put_url" not in second["files"]["file.bin"]
    system.indexer.run_once()
    index, _ = read_index(system.regions.index, upload.digest)
    assert [u.batch_id for u in index.uploads] == [first["id"], second["id"]]
    assert leftovers(system) == []


def test_same_digest_in_two_batches_at_once(system: System) -> None:
    upload = new()
    first = system.post([upload]).json()["result"]
    second = system.post([Uploaded("other-name.bin", upload.data, "public")]).json()["result"]
    assert first["id"] != second["id"]
    assert system.put(first["files"]["file.bin"]["put_url"], upload.data) == 200
    assert system.put(second["files"]["other-name.bin"]["put_url"], upload.data) == 200
    report = system.indexer.run_once()
    assert report.indexed == [upload.digest]
    assert report.recorded == [upload.digest]
    index, _ = read_index(system.regions.index, upload.digest)
    assert sorted((u.batch_id, u.filename) for u in index.uploads) == [
        (first["id"], "file.bin"),
        (second["id"], "other-name.bin"),
    ]
    assert leftovers(system) == []


def test_uploads_that_never_came_expire(system: System) -> None:
    upload = new()
    system.post([upload])
    assert system.indexer.run_once().waiting == [upload.digest]
    later = Indexer(system.regions, clock=lambda: __import__("time").time() + 2 * 86400)
    assert later.run_once().expired == [upload.digest]
    assert leftovers(system) == []


def test_two_indexers_at_once(system: System) -> None:
    uploads = [new(f"f{number}.bin") for number in range(6)]
    system.upload(uploads)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            Indexer(system.regions).run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    system.indexer.run_once()
    for upload in uploads:
        assert system.download(upload.digest, client_id="reader") == (302, upload.data)
        index, _ = read_index(system.regions.index, upload.digest)
        assert len(index.uploads) == 1
    assert leftovers(system) == []
    assert system.indexer.failures() == []


class Killed(BaseException):
    """The process died here."""


class Dying:
    """A store that dies at its Nth write (put, copy or delete)."""

    def __init__(self, store, at: int) -> None:
        self._store = store
        self.region = store.region
        self._left = at

    def _step(self) -> None:
        self._left -= 1
        if self._left == 0:
            raise Killed

    def put(self, *args, **kwargs):
        self._step()
        return self._store.put(*args, **kwargs)

    def copy(self, *args, **kwargs):
        self._step()
        return self._store.copy(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._step()
        return self._store.delete(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_an_indexer_killed_at_each_step_is_finished_by_the_next(system: System) -> None:
    from indexer.stores import Regions

    step = 1
    while True:
        upload = new(f"step{step}.bin")
        system.upload([upload])
        dying = Indexer(Regions([Dying(system.regions.index, step)]))
        try:
            dying.run_once()
        except Killed:
            pass
        else:
            break  # a pass with fewer writes than `step`: every step was covered
        system.indexer.run_once(check=False)  # no full rebuild: the pass itself must finish
        assert system.download(upload.digest, client_id="reader") == (302, upload.data), step
        index, _ = read_index(system.regions.index, upload.digest)
        assert len(index.uploads) == 1
        # No pending record is left (it holds quota); staged bytes a kill left behind
        # are orphans, removed by the consistency check.
        assert [key for key in leftovers(system) if key.startswith(PENDING)] == [], step
        listed = system.client.get("/file", params={"q": upload.digest[:16]}).json()["result"]
        assert [entry["digest"] for entry in listed] == [upload.digest], step
        batches = system.client.get("/upload", params={"q": "m"}).json()["result"]
        assert len(batches) == step, step
        system.indexer.run_once()
        assert leftovers(system) == [], step
        step += 1
    assert step > 4


@pytest.mark.parametrize("put_again", [True, False])
def test_a_slower_indexer_records_no_failure_for_a_good_upload(
    system: System, monkeypatch, put_again: bool
) -> None:
    """Indexer two reads "not indexed"; indexer one finishes the upload; indexer two then finds
    the uploader's repeated PUT (wrong bytes) or nothing at all (past the TTL)."""
    import time

    from indexer.job import PassReport, _BatchMessages, _Staged

    upload = new()
    url = system.post([upload]).json()["result"]["files"]["file.bin"]["put_url"]
    assert system.put(url, upload.data) == 200
    late = (lambda: time.time()) if put_again else (lambda: time.time() + 2 * 86400)
    two = Indexer(system.regions, clock=late)
    [pending] = two._pending()
    store = system.regions.index
    real_list = store.list

    def listing(prefix: str):
        # Indexer two looks for the staged bytes: indexer one finishes meanwhile.
        monkeypatch.setattr(store, "list", real_list)
        Indexer(system.regions).run_once(check=False)
        if put_again:
            system.put(url, os.urandom(len(upload.data)))
        return real_list(prefix)

    monkeypatch.setattr(store, "list", listing)
    two._process(pending, _BatchMessages(store), _Staged(), PassReport())
    monkeypatch.undo()
    assert system.download(upload.digest, client_id="reader") == (302, upload.data)
    assert system.indexer.failures() == []


def test_a_lost_blob_is_uploaded_again(system: System) -> None:
    upload = new()
    system.upload([upload])
    system.indexer.run_once()
    system.regions.index.delete(blob_key(upload.digest))
    again = system.upload([upload], message="again")
    assert "put_url" in again["files"]["file.bin"]
    system.indexer.run_once()
    assert system.download(upload.digest, client_id="reader") == (302, upload.data)


def test_deleted_bytes_never_change_sides(system: System) -> None:
    from indexer.index import update_index
    from indexer.schema import Tombstone
    from indexer.stores import ObjectNotFound
    from tests.gateway.test_download import assert_problem

    secret = new(visibility="internal")
    system.upload([secret])
    system.indexer.run_once()
    store = system.regions.index
    store.delete(blob_key(secret.digest))
    update_index(
        store,
        secret.digest,
        lambda current: current.with_changes(
            instances=(), deleted=Tombstone("admin", current.updated_at, "leaked", (store.region,))
        ),
    )
    problem = assert_problem(system.post([Uploaded("x.bin", secret.data, "public")]), 400)
    assert problem["detail"] == "Cannot change already existing file's visibility level."
    with pytest.raises(ObjectNotFound):
        store.head(blob_key(secret.digest))


def killed_before_forgetting(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass killed once it has done its uploads' work, before it forgets their records."""

    def killed(pending: object) -> None:
        raise Killed

    monkeypatch.setattr(system.indexer, "_forget", killed)
    with pytest.raises(Killed):
        system.indexer.run_once(check=False)
    monkeypatch.undo()


def test_a_file_deleted_after_a_killed_pass_stays_deleted(system: System, monkeypatch) -> None:
    """Found by the crash loop (tests/crash/): a pass killed after it indexed an upload,
    before it forgot its pending record; the file then deleted; the next pass verified
    the staged bytes again and brought the deleted file back."""
    from indexer.management import DeleteInstances, apply
    from tests.gateway.test_download import assert_problem

    upload = new()
    system.upload([upload])
    killed_before_forgetting(system, monkeypatch)
    assert [key for key in leftovers(system) if key.startswith(PENDING)]
    apply(system.regions, upload.digest, [DeleteInstances("withdrawn")], by="admin")
    system.indexer.run_once(check=False)
    assert_problem(system.redirect(upload.digest, client_id="reader"), 404)
    index, _ = read_index(system.regions.index, upload.digest)
    assert index.deleted is not None
    assert leftovers(system) == []
    assert system.indexer.failures() == []  # the upload was not refused: it was done
