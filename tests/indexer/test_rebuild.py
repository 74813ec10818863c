"""``tooltool-indexer rebuild``: the index and the catalog, from the blobs, the batch records
and the audit log alone, byte for byte what the indexer wrote as it went."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.cli import EXIT_OK, main
from indexer.importer import import_file, record_import
from indexer.index import read_index
from indexer.rebuild import rebuild
from indexer.schema import blob_key
from tests.gateway.test_download import assert_problem
from tests.gateway.test_manage import patch
from tests.indexer.test_malformed import cli_environ
from tests.recording_store import writes_failing
from tests.system import System, Uploaded

DERIVED = ("index/", "catalog/")


def derived_state(store: Any) -> dict[str, bytes]:
    return {info.key: store.get(info.key)[0] for prefix in DERIVED for info in store.list(prefix)}


def forget_derived_state(store: Any) -> None:
    for prefix in DERIVED:
        for info in list(store.list(prefix)):
            store.delete(info.key)


def a_history(system: System, tmp_path: Path) -> dict[str, Uploaded]:
    """Uploads, arrivals, a refusal, a waiting upload, management changes and an import."""
    files = {
        "public": Uploaded("gcc.tar.xz", os.urandom(300), "public"),
        "internal": Uploaded("sdk.zip", os.urandom(200), "internal"),
        "flipped": Uploaded("flip.bin", os.urandom(100), "public"),
        "deleted": Uploaded("gone.bin", os.urandom(100), "public"),
        "restored": Uploaded("back.bin", os.urandom(100), "public"),
    }
    system.upload(list(files.values()), message="first batch\nwith a second line")
    system.indexer.run_once(check=False)
    # A second batch naming stored files under other names: arrivals.
    again = Uploaded("gcc-again.tar.xz", files["public"].data, "public")
    system.upload([again, Uploaded("sdk-copy.zip", files["internal"].data, "internal")])
    # A refused one: the same bytes declared with another visibility.
    system.post([Uploaded("flip-as-internal.bin", files["flipped"].data, "internal")])
    # One whose bytes never come (pending at rebuild time).
    system.post([Uploaded("never.bin", os.urandom(50), "public")], message="waiting")
    system.indexer.run_once(check=False)
    assert (
        patch(
            system,
            files["flipped"].digest,
            [{"op": "set_visibility", "visibility": "internal", "reason": "leak"}],
        ).status_code
        == 200
    )
    for name in ("deleted", "restored"):
        assert (
            patch(
                system, files[name].digest, [{"op": "delete_instances", "reason": "bad"}]
            ).status_code
            == 200
        )
    system.upload([files["restored"]], message="uploaded again")
    system.indexer.run_once(check=False)
    path = tmp_path / "imported.tar.gz"
    path.write_bytes(os.urandom(150))
    started = time.time()
    as_operator = {"message": "import", "author": "op@host", "clock": lambda: started}
    imported = import_file(system.regions, path, visibility="public", batch_id=900, **as_operator)
    record_import(system.regions, 900, [imported], visibility="public", **as_operator)
    system.indexer.run_once()  # with the consistency check
    return files


def test_the_round_trip_is_byte_identical(system: System, tmp_path: Path) -> None:
    files = a_history(system, tmp_path)
    store = system.regions.index
    before = derived_state(store)
    assert any(key.startswith("index/") for key in before)
    assert any(key.startswith("catalog/files/") for key in before)
    assert any(key.startswith("catalog/batches/") for key in before)
    forget_derived_state(store)
    report = rebuild(system.regions)
    assert report.unexplained == 0
    assert not report.is_partial
    assert derived_state(store) == before
    # And what it rebuilt is what the gateway answers from.
    flipped, _ = read_index(store, files["flipped"].digest)
    assert flipped.visibility == "internal"
    deleted, _ = read_index(store, files["deleted"].digest)
    assert deleted.deleted is not None
    assert deleted.deleted.reason == "bad"
    assert system.download(files["restored"].digest)[0] == 302
    assert system.download(files["deleted"].digest)[0] == 404


def test_a_rebuild_over_an_intact_index_writes_nothing(system: System, tmp_path: Path) -> None:
    a_history(system, tmp_path)
    store = system.regions.index
    before = {info.key: info.etag for prefix in DERIVED for info in store.list(prefix)}
    report = rebuild(system.regions)
    assert report.written == 0
    assert report.shards_written == 0
    assert {info.key: info.etag for prefix in DERIVED for info in store.list(prefix)} == before


def test_a_damaged_index_object_is_rewritten(system: System) -> None:
    upload = Uploaded("tool.bin", os.urandom(100), "internal")
    system.upload([upload])
    system.indexer.run_once()
    store = system.regions.index
    good = derived_state(store)
    raw = good[f"index/sha512/{upload.digest}.json"]
    store.put(f"index/sha512/{upload.digest}.json", raw.replace(b'"internal"', b'"public"'))
    assert rebuild(system.regions).written == 1
    assert derived_state(store) == good


def test_a_blob_nothing_explains_is_left_out(system: System) -> None:
    data = os.urandom(64)
    import hashlib

    digest = hashlib.sha512(data).hexdigest()
    system.regions.index.put(blob_key(digest), data)
    report = rebuild(system.regions)
    assert report.unexplained == 1
    assert read_index(system.regions.index, digest) is None


def test_the_command(
    system: System,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    forget_derived_state(system.regions.index)
    assert main(["rebuild"], cli_environ(system, request)) == EXIT_OK
    out, err = capsys.readouterr()
    [line] = out.splitlines()  # one JSON summary line, no bars off a terminal
    summary = json.loads(line)
    assert summary["written"] == 1
    assert summary["failures"] == 0
    assert {"seconds", "bytes", "blobs", "shards_written"} <= summary.keys()
    assert err == ""
    assert system.download(upload.digest)[0] == 302


def test_the_round_trip_over_two_regions(
    two_regions: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Uploads to either region, replicated; a copy lost and restored; then the round trip."""
    from tests.conftest import make_system

    system = make_system(two_regions, tmp_path)
    first, second = system.regions.names
    east = Uploaded("east.bin", os.urandom(300), "public")
    west = Uploaded("west.bin", os.urandom(300), "internal")
    system.upload([east], message="to the first region")
    system.upload([west], message="to the second", query=f"?region={second}")
    system.indexer.run_once(check=False)
    system.regions[second].delete(blob_key(east.digest))  # behind the indexer's back
    system.indexer.run_once()  # restored by the check
    found, _ = read_index(system.regions.index, east.digest)
    assert sorted(found.instances) == sorted([first, second])
    store = system.regions.index
    before = derived_state(store)
    forget_derived_state(store)
    assert rebuild(system.regions).unexplained == 0
    assert derived_state(store) == before


def test_a_copy_nobody_verified_is_not_listed(system: System) -> None:
    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    store = system.regions.index
    good = derived_state(store)
    store.put(blob_key(upload.digest), os.urandom(100))  # the same size, other bytes
    forget_derived_state(store)
    report = rebuild(system.regions)
    assert report.hashed_bytes == 100
    found, _ = read_index(store, upload.digest)
    assert found.instances == ()
    assert system.download(upload.digest)[0] == 404
    store.put(blob_key(upload.digest), upload.data)  # the right bytes again
    rebuild(system.regions)
    assert derived_state(store) == good  # the same bytes, the same ETag: as before


def test_copies_already_verified_are_not_read_again(system: System) -> None:
    system.upload([Uploaded("tool.bin", os.urandom(100), "public")])
    system.indexer.run_once()
    assert rebuild(system.regions).hashed_bytes == 0


def flipped_internal(system: System) -> Uploaded:
    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload], message="tool")
    system.indexer.run_once(check=False)
    flip = [{"op": "set_visibility", "visibility": "internal", "reason": "leaked"}]
    assert patch(system, upload.digest, flip).status_code == 200
    return upload


def visibility_records(store: Any) -> list[str]:
    return [
        info.key
        for info in store.list("audit/log/")
        if b'"visibility"' in store.get(info.key)[0] and b'"to"' in store.get(info.key)[0]
    ]


@pytest.mark.parametrize("index_kept", [True, False])
def test_an_unreadable_record_never_publishes(
    system: System,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    index_kept: bool,
) -> None:
    upload = flipped_internal(system)
    store = system.regions.index
    [record] = visibility_records(store)
    store.put(record, store.get(record)[0][:40])  # truncated
    if not index_kept:
        forget_derived_state(store)
    assert main(["rebuild"], cli_environ(system, request)) == 6
    assert json.loads(capsys.readouterr().out)["unreadable"] == 1
    assert read_index(store, upload.digest)[0].visibility == "internal"
    assert system.download(upload.digest)[0] == 403


def test_a_record_of_the_wrong_shape_is_unreadable_not_fatal(system: System) -> None:
    upload = flipped_internal(system)
    store = system.regions.index
    [record] = visibility_records(store)
    data = json.loads(store.get(record)[0])
    store.put(record, json.dumps(data | {"seq": str(data["seq"]), "at": 1e400}).encode())
    report = rebuild(system.regions)
    assert report.unreadable == 1
    assert read_index(store, upload.digest)[0].visibility == "internal"


def test_a_patch_made_while_the_rebuild_runs_is_kept(system: System, monkeypatch: Any) -> None:
    from indexer import rebuild as rebuilding
    from indexer.index import update_index
    from indexer.management import SetVisibility, apply

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    store = system.regions.index
    update_index(store, upload.digest, lambda found: found.with_changes(uploads=()))  # stale

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(rebuilding, "update_index", update_index)
        apply(system.regions, upload.digest, [SetVisibility("internal", "now")], by="admin")
        return update_index(*args, **kwargs)

    monkeypatch.setattr(rebuilding, "update_index", meanwhile)
    rebuild(system.regions)
    assert read_index(store, upload.digest)[0].visibility == "internal"
    assert system.download(upload.digest)[0] == 403


def test_a_batch_whose_post_did_not_finish_is_no_arrival(system: System) -> None:
    from indexer.intake import Batch, BatchFile

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    store = system.regions.index
    before = derived_state(store)
    orphan = Batch(  # the batch record written, its pending records never were
        id=77,
        author="uploader",
        uploaded="2026-11-29T00:00:00Z",
        message="failed post",
        region=store.region,
        files={"tool.bin": BatchFile(100, upload.digest, "sha512", "public")},
    )
    store.put(orphan.key, orphan.to_json())
    forget_derived_state(store)
    rebuild(system.regions)
    after = derived_state(store)
    assert (
        after[f"index/sha512/{upload.digest}.json"] == before[f"index/sha512/{upload.digest}.json"]
    )


def test_a_pass_killed_between_its_record_and_its_write(system: System) -> None:
    """The record comes first: a rerun's own supersedes it, and the round trip holds."""
    from indexer.stores import StoreUnavailable

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    store = system.regions.index
    with writes_failing(store, "index/"), pytest.raises(StoreUnavailable):
        system.indexer.run_once(check=False)
    assert read_index(store, upload.digest) is None  # recorded, not written
    time.sleep(1.1)  # the rerun's time is another second
    system.indexer.run_once()
    before = derived_state(store)
    forget_derived_state(store)
    rebuild(system.regions)
    assert derived_state(store) == before


def test_a_patch_between_the_log_read_and_the_object_read_is_kept(
    system: System, monkeypatch: Any
) -> None:
    from indexer import rebuild as rebuilding
    from indexer.management import SetVisibility, apply

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    existing = rebuilding._existing

    def patched_first(regions: Any, digest: str) -> Any:
        apply(regions, digest, [SetVisibility("internal", "now")], by="admin")
        return existing(regions, digest)

    monkeypatch.setattr(rebuilding, "_existing", patched_first)
    rebuild(system.regions)
    assert read_index(system.regions.index, upload.digest)[0].visibility == "internal"
    assert system.download(upload.digest)[0] == 403


def test_a_failed_patch_is_undone_by_the_opposite_one(system: System) -> None:
    upload = flipped_internal(system)
    store = system.regions.index
    publish = [{"op": "set_visibility", "visibility": "public"}]
    with writes_failing(store, "index/"):
        assert_problem(patch(system, upload.digest, publish), 503)  # recorded, not written
    undo = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, upload.digest, undo).status_code == 200
    rebuild(system.regions)
    assert read_index(store, upload.digest)[0].visibility == "internal"
    assert system.download(upload.digest)[0] == 403


def test_racing_writers_leave_the_time_of_the_last_write(system: System) -> None:
    """The last record in the log is the write that landed last, whatever its clock."""
    from indexer.management import SetVisibility, apply

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    later, earlier = time.time() + 100, time.time() + 50
    apply(system.regions, upload.digest, [SetVisibility("internal")], by="a", clock=lambda: later)
    apply(system.regions, upload.digest, [SetVisibility("public")], by="b", clock=lambda: earlier)
    store = system.regions.index
    before = derived_state(store)
    forget_derived_state(store)
    rebuild(system.regions)
    assert derived_state(store) == before


def test_an_upload_a_killed_pass_did_not_forget_stays_an_arrival(
    system: System, monkeypatch: Any
) -> None:
    """Found by the crash loop (tests/crash/): a pass killed after it verified an upload,
    before it forgot its pending record; the rebuild took the record for an upload still
    to come and dropped the arrival; the file deleted, the next pass no longer knew the
    staged bytes for that upload's, verified them again and brought the file back."""
    from indexer.management import DeleteInstances, apply
    from tests.flows.test_upload import killed_before_forgetting

    upload = Uploaded("tool.bin", os.urandom(100), "public")
    system.upload([upload])
    killed_before_forgetting(system, monkeypatch)
    store = system.regions.index
    before = read_index(store, upload.digest)
    rebuild(system.regions)
    assert read_index(store, upload.digest) == before
    apply(system.regions, upload.digest, [DeleteInstances("withdrawn")], by="admin")
    rebuild(system.regions)
    system.indexer.run_once(check=False)
    assert_problem(system.redirect(upload.digest, client_id="reader"), 404)
    assert system.indexer.failures() == []
