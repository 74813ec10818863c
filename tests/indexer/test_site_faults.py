"""The incremental site under faults and races: whatever happens between a change and
the passes after it, the site ends as a full render makes it, and a file made internal
leaves the public site."""

from __future__ import annotations

import os
from typing import Any

import pytest

from indexer.job import Indexer
from indexer.schema import index_key
from indexer.site.job import SiteJob, render_site
from indexer.site.publish import group
from indexer.stores import StoreUnavailable
from tests.gateway.test_manage import patch
from tests.indexer.test_site_incremental import forget_the_site, site_objects
from tests.recording_store import writes_failing
from tests.system import System, Uploaded


def full_render(store: Any) -> dict[str, bytes]:
    """What `render_site` makes from nothing (the store's site put back afterwards)."""
    saved = {info.key: store.get(info.key)[0] for info in store.list("site/")}
    forget_the_site(store)
    render_site(store)
    rendered = site_objects(store)
    forget_the_site(store)
    for key, data in saved.items():
        store.put(key, data)
    return rendered


def diff(followed: dict[str, bytes], rendered: dict[str, bytes]) -> list[str]:
    return sorted(
        key for key in followed.keys() | rendered.keys() if followed.get(key) != rendered.get(key)
    )


def test_a_batch_posted_before_a_new_process_loads_is_shown(system: System) -> None:
    """Another process saved the copy; a batch is posted; this process loads the copy
    (its batches as the site showed them) and follows the batch shard: the batch shows."""
    store = system.regions.index
    SiteJob(store).refresh()
    pending = Uploaded("never-comes.tar.xz", os.urandom(64), "public")
    assert system.post([pending], message="posted, bytes to come").status_code == 200
    job = SiteJob(store)  # a new process
    job.refresh()
    job.refresh()  # and later passes: nothing new
    assert diff(site_objects(store), full_render(store)) == []


def test_a_publish_killed_midway_is_done_by_the_next_pass(system: System) -> None:
    """A publish that fails leaves nothing trusted in memory, and the copy in the store is
    saved only after the pages: the next pass publishes the new batch."""
    store = system.regions.index
    job = SiteJob(store)
    job.refresh()
    pending = Uploaded("later.tar.xz", os.urandom(64), "public")
    assert system.post([pending], message="a batch killed midway").status_code == 200
    with writes_failing(store, "site/public/"), pytest.raises(StoreUnavailable):
        job.refresh()
    job.refresh()  # the same process, next pass
    SiteJob(store).refresh()  # a restarted one
    assert diff(site_objects(store), full_render(store)) == []


def test_an_arrival_recorded_after_the_site_read_the_batch_shows(
    system: System,
) -> None:
    """A batch names a stored file under the name it has; the site follows the batch before
    the indexer records the arrival (no audit record, no catalog change): the file waits,
    read again each pass until its index object lists the batch."""
    store = system.regions.index
    job = SiteJob(store)
    first = Uploaded("same.tar.xz", os.urandom(64), "public")
    system.upload([first], message="first")
    system.indexer.run_once(check=False)
    job.refresh()
    system.upload([first], message="again, same bytes, same name", client_id="admin")
    job.refresh()  # a pass renders while the batch is pending (or the POST lands mid-pass)
    system.indexer.run_once(check=False)  # the arrival is recorded
    job.refresh()
    system.indexer.run_once(check=True)  # even after a checking pass
    job.refresh()
    assert diff(site_objects(store), full_render(store)) == []


def test_a_missing_manifest_does_not_keep_a_flipped_file_public(system: System) -> None:
    """A manifest missing (not unreadable): the page of a file made internal is deleted all
    the same, as the file changed and left the view."""
    store = system.regions.index
    system.indexer = Indexer(system.regions, render_site=True)
    secret = Uploaded("soon-internal.tar.xz", os.urandom(64), "public")
    system.upload([secret], message="soon internal")
    system.indexer.run_once(check=False)
    page = f"f/{secret.digest}/index.html"
    assert system.client.get("/" + page).status_code == 200
    store.delete(f"site/state/public/manifest/{group(page).replace('/', '+')}.json")
    system.indexer = Indexer(system.regions, render_site=True)  # a restart
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, secret.digest, flip).status_code == 200
    system.indexer.run_once(check=False)
    system.indexer.run_once(check=True)
    assert system.client.get("/" + page).status_code == 404


def test_a_file_whose_index_object_is_unreadable_leaves_the_site(system: System) -> None:
    """Made internal, then its index object unreadable before the pass: the site leaves the
    file out, as a full render would (it fails closed)."""
    store = system.regions.index
    system.indexer = Indexer(system.regions, render_site=True)
    secret = Uploaded("flip-then-corrupt.tar.xz", os.urandom(64), "public")
    system.upload([secret], message="m")
    system.indexer.run_once(check=False)
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, secret.digest, flip).status_code == 200
    store.put(index_key(secret.digest), b"{not json")
    system.indexer.run_once(check=False)
    assert system.client.get(f"/f/{secret.digest}/index.html").status_code == 404


def test_a_missing_state_shard_is_noticed(system: System) -> None:
    """A state shard missing (not unreadable): the position names the shards the copy is
    made of, so a new process reads the sources again instead of losing files."""
    store = system.regions.index
    old = Uploaded("old.tar.xz", os.urandom(64), "public")
    system.upload([old])
    system.indexer.run_once(check=False)
    SiteJob(store).refresh()
    store.delete(f"site/state/files/{old.digest[:3]}.json")
    system.upload([Uploaded("new.tar.xz", os.urandom(64), "public")])
    system.indexer.run_once(check=False)
    SiteJob(store).refresh()  # a new process
    assert f"site/public/f/{old.digest}/index.html" in site_objects(store)


def test_a_record_followed_before_its_write_waits_for_it(system: System, monkeypatch: Any) -> None:
    """A file's verified record is followed before its write lands (the site reads the old
    object); other records follow in later passes: the file waits until its object shows
    the write (the upload of the record's batch), however many passes that takes."""
    import indexer.job as indexer_job
    from indexer.schema import blob_key

    store = system.regions.index
    job = SiteJob(store)
    lost = Uploaded("lost.tar.xz", os.urandom(64), "public")
    other = Uploaded("other.tar.xz", os.urandom(64), "public")
    system.upload([lost, other], message="first")
    system.indexer.run_once(check=False)
    job.refresh()
    store.delete(blob_key(lost.digest))  # its only copy lost: uploaded again
    system.upload([lost], message="again", client_id="admin")
    real = indexer_job.update_index

    def racing(store_: Any, digest: str, change: Any, **options: Any) -> Any:
        before = options.pop("before_write", None)

        def recorded(existing: Any, updated: Any) -> None:
            if before is not None:
                before(existing, updated)
            job.refresh()  # a pass renders between the record and the write

        result = real(store_, digest, change, before_write=recorded, **options)
        if digest == lost.digest:
            # Another change is followed before the indexer updates the catalog.
            assert patch(system, other.digest, [{"op": "set_visibility", "visibility": "public"}])
            job.refresh()
        return result

    monkeypatch.setattr(indexer_job, "update_index", racing)
    system.indexer.run_once(check=False)
    monkeypatch.setattr(indexer_job, "update_index", real)
    job.refresh()
    job.refresh()
    assert diff(site_objects(store), full_render(store)) == []


def test_a_flip_read_before_it_lands_leaves_the_public_site(
    system: System, monkeypatch: Any
) -> None:
    """A pass follows the flip's record before its index write lands, and the PATCH's
    catalog update then fails (no feed entry names the shard): the file waits until its
    object shows the visibility the record set, and leaves the public site."""
    import indexer.management as management

    system.indexer = Indexer(system.regions, render_site=True)
    secret = Uploaded("raced-flip.tar.xz", os.urandom(64), "public")
    system.upload([secret], message="m")
    system.indexer.run_once(check=False)
    real = management.update_index
    failing: list[Any] = []  # the store the gateway writes through (its metrics wrapper)

    def racing(store_: Any, digest: str, change: Any, **options: Any) -> Any:
        before = options.pop("before_write")

        def recorded(existing: Any, updated: Any) -> None:
            before(existing, updated)
            system.indexer.site.refresh()  # the pass renders here

        result = real(store_, digest, change, before_write=recorded, **options)
        store_.put = _failing_catalog(store_)  # the catalog update fails
        failing.append(store_)
        return result

    monkeypatch.setattr(management, "update_index", racing)
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, secret.digest, flip).status_code >= 500
    monkeypatch.setattr(management, "update_index", real)
    del failing[0].put
    for _ in range(3):
        system.upload([Uploaded("other.tar.xz", os.urandom(64), "public")])  # life goes on
        system.indexer.run_once(check=False)
    assert system.client.get(f"/f/{secret.digest}/index.html").status_code == 404


def _failing_catalog(store: Any) -> Any:
    from indexer.stores import StoreUnavailable

    put = type(store).put

    def failing(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("catalog/"):
            raise StoreUnavailable(store.region, "catalog writes fail")
        return put(store, key, *args, **kwargs)

    return failing


def test_a_read_failing_mid_follow_is_done_by_the_next_pass(system: System) -> None:
    """A store read failing during the follow (after the batch shard was applied in memory):
    the copy is dropped, and the next pass publishes the batch."""
    from indexer.stores import StoreUnavailable

    store = system.regions.index
    job = SiteJob(store)
    job.refresh()
    first = Uploaded("a.tar.xz", os.urandom(64), "public")
    system.upload([first])
    system.indexer.run_once(check=False)
    job.refresh()
    system.post([first, Uploaded("b.tar.xz", os.urandom(64), "public")], message="pending")
    get = type(store).get

    def failing(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("index/"):
            raise StoreUnavailable(store.region, "a read times out")
        return get(store, key, *args, **kwargs)

    store.get = failing
    with pytest.raises(StoreUnavailable):
        job.refresh()
    del store.get
    job.refresh()
    job.refresh()
    assert diff(site_objects(store), full_render(store)) == []
