"""The indexer job's consistency check, determinism and CLI, on both stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.catalog import Catalog
from indexer.cli import CheckSchedule, main
from indexer.index import read_index, readable_index_objects
from indexer.last_pass import MARKER_KEY, read_last_pass
from indexer.schema import blob_key
from indexer.stores import StoreUnavailable
from tests.system import System, Uploaded


def test_missing_blobs_are_dropped_from_the_index(system: System) -> None:
    upload = Uploaded("a.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    system.regions.index.delete(blob_key(upload.digest))
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    index, _ = read_index(system.regions.index, upload.digest)
    assert index.instances == ()
    assert system.download(upload.digest)[0] == 404
    assert system.client.get(f"/file/sha512/{upload.digest}").json()["has_instances"] is False


def test_orphaned_staging_is_removed(system: System) -> None:
    system.regions.index.put("staging/" + "a" * 128 + "/orphan", b"left behind")
    assert system.indexer.run_once().removed_staging == 1
    assert list(system.regions.index.list("staging/")) == []


def test_a_rerun_writes_nothing_new(system: System) -> None:
    system.upload(
        [Uploaded("a.bin", os.urandom(10), "public"), Uploaded("b.bin", os.urandom(10), "internal")]
    )
    system.indexer.run_once()
    store = system.regions.index
    # The marker of the pass's end (what gateways' heartbeats read) is all it writes.
    before = {info.key: info.etag for info in store.list("") if info.key != MARKER_KEY}
    system.indexer.run_once()
    assert {info.key: info.etag for info in store.list("") if info.key != MARKER_KEY} == before
    assert read_last_pass(store) is not None
    files = catalog_entries(store, "files/")
    assert sorted(entry["filenames"] for entry in files) == [["a.bin"], ["b.bin"]]
    for shard in Catalog(store).shards():
        keys = [entry.get("digest", entry.get("id")) for entry in Catalog(store).shard(shard)]
        assert keys == sorted(keys)
    assert len(catalog_entries(store, "batches/")) == 1


def catalog_entries(store, kind: str) -> list[dict]:
    catalog = Catalog(store)
    return [
        entry
        for shard in catalog.shards()
        if shard.startswith(kind)
        for entry in catalog.shard(shard)
    ]


def test_a_pass_without_check_updates_the_catalog(system: System) -> None:
    upload = Uploaded("quick.bin", os.urandom(10), "public")
    system.upload([upload])
    system.indexer.run_once(check=False)
    files = catalog_entries(system.regions.index, "files/")
    assert [entry["digest"] for entry in files] == [upload.digest]


@pytest.fixture
def local_environ(tmp_path: Path) -> dict[str, str]:
    return {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}


def put_bad_upload(store) -> None:
    """A pending upload whose staged bytes are not the declared file."""
    from indexer.intake import Pending

    pending = Pending(
        digest="a" * 128,
        size=3,
        visibility="public",
        batch_id=1,
        filenames=("x",),
        author="me",
        region="local",
        staging_key="staging/" + "a" * 128 + "/k",
        created=0,
    )
    store.put(pending.key, pending.to_json())
    store.put(pending.staging_key, b"bad")


def test_cli_run_and_failures(local_environ: dict[str, str], tmp_path: Path, capsys) -> None:
    from indexer.config import StoreSettings, open_regions

    regions = open_regions(StoreSettings.from_environ(local_environ))
    store = regions.index
    put_bad_upload(store)
    assert main(["run"], local_environ) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 1
    assert main(["failures"], local_environ) == 0
    failure = json.loads(capsys.readouterr().out)
    assert failure["digest"] == "a" * 128
    assert failure["reason"].startswith("sha512 mismatch")


def test_cli_watch_runs_until_interrupted(local_environ: dict[str, str], tmp_path: Path) -> None:
    from indexer.config import StoreSettings, open_regions

    store = open_regions(StoreSettings.from_environ(local_environ)).index
    put_bad_upload(store)
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", "--interval", "0.2"],
        env={**os.environ, **local_environ},
        stderr=subprocess.PIPE,
        text=True,
    )
    catalog = Path(local_environ["TOOLTOOL_DATA_DIR"]) / "intake" / "failures"
    deadline = time.monotonic() + 20
    while not catalog.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # as Kubernetes stops it; Ctrl-C unwinds the same
    _, stderr = process.communicate(timeout=20)
    assert catalog.exists()
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].endswith("stopped")


def test_a_rebuild_keeps_what_was_indexed_meanwhile(system: System) -> None:
    from indexer.job import Indexer

    first = Uploaded("first.bin", os.urandom(10), "public")
    system.upload([first])
    system.indexer.run_once()
    checking = Indexer(system.regions)
    listed = readable_index_objects(system.regions.index)
    batches = checking.catalog.batch_records()
    late = Uploaded("late.bin", os.urandom(10), "public")
    system.upload([late], message="late batch")
    Indexer(system.regions).run_once(check=False)
    checking.catalog.rebuild(listed, batches)  # written after the other indexer's update
    found = system.client.get("/file", params={"q": late.digest[:16]}).json()["result"]
    assert [entry["digest"] for entry in found] == [late.digest]
    assert system.client.get("/upload", params={"q": "late batch"}).json()["result"]


def test_batch_ids_are_unique_under_contention(system: System) -> None:
    import threading

    from indexer.intake import next_batch_id

    ids: list[int] = []
    errors: list[BaseException] = []

    def allocate() -> None:
        try:
            for _ in range(10):
                ids.append(next_batch_id(system.regions.index))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(ids) == list(range(1, 61))


def test_local_versions_are_told_apart_by_content(tmp_path: Path) -> None:
    """Same inode, same mtime, same size, other bytes (a coarse-timestamp filesystem reusing
    an inode): another ETag, so compare-and-swap refuses the stale version."""
    from indexer.stores import PreconditionFailed
    from tests.conftest import make_local_store

    store = make_local_store(tmp_path / "data")
    first = store.put("intake/batch-counter", b"41")
    path = store.path("intake/batch-counter")
    stat = path.stat()
    with path.open("r+b") as stream:
        stream.write(b"42")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_ino == stat.st_ino
    assert store.head("intake/batch-counter").etag != first.etag
    with pytest.raises(PreconditionFailed):
        store.put("intake/batch-counter", b"42", if_match=first.etag)


def test_a_failed_check_still_records_the_uploads_of_its_pass(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uploads a pass finished reach the catalog and are forgotten before the check's
    error is raised: the next passes do not redo them."""
    upload = Uploaded("a.bin", os.urandom(100), "public")
    system.upload([upload], message="before the failure")
    failure = StoreUnavailable(system.regions.index.region, "down in this test")

    def fail(index_objects: object) -> None:
        raise failure

    monkeypatch.setattr(system.indexer._consistency, "run", fail)
    with pytest.raises(StoreUnavailable) as raised:
        system.indexer.run_once()
    assert raised.value is failure
    assert list(system.regions.index.list("intake/pending/")) == []
    [batch] = system.client.get("/upload", params={"q": "failure"}).json()["result"]
    assert [entry["has_instances"] for entry in batch["files"].values()] == [True]
    monkeypatch.undo()
    report = system.indexer.run_once()
    assert report.indexed == report.recorded == []


def test_watch_backs_off_after_a_check_that_failed() -> None:
    """A check that did not finish is tried again after a delay doubling from a minute up
    to the check interval, not at every pass; one that finished waits the interval."""
    schedule = CheckSchedule(3600.0)
    assert schedule.is_due(0.0)
    schedule.checked(0.0, finished=False)
    assert not schedule.is_due(2.0)  # the next pass does not check
    assert schedule.is_due(60.0)
    delays = []
    started = 60.0
    for _ in range(8):
        schedule.checked(started, finished=False)
        due = started + 1
        while not schedule.is_due(due):
            due += 1
        delays.append(due - started)
        started = due
    assert delays == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    schedule.checked(started, finished=True)
    assert not schedule.is_due(started + 3599)
    assert schedule.is_due(started + 3600)
    schedule.checked(started + 3600, finished=False)
    assert schedule.is_due(started + 3660)  # a finished check starts the back-off anew
