"""The site kept up to date pass by pass: only what a change touches is rendered and
written, nothing when nothing is new, and what it follows to is what a rebuild makes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from indexer.cli import EXIT_OK, main
from indexer.site import job as site_job
from indexer.site.job import SiteJob, render_site
from indexer.site.model import uploader_slug
from tests.gateway.test_manage import patch
from tests.indexer.test_malformed import cli_environ
from tests.indexer.test_rebuild import a_history, forget_derived_state
from tests.recording_store import RecordingStore
from tests.system import System, Uploaded


def site_objects(store: Any) -> dict[str, bytes]:
    return {
        info.key: store.get(info.key)[0]
        for view in ("public", "internal")
        for info in store.list(f"site/{view}/")
    }


def forget_the_site(store: Any) -> None:
    for info in list(store.list("site/")):
        store.delete(info.key)


def batch_of(system: System, count: int, name: str, **options: Any) -> list[Uploaded]:
    files = [Uploaded(f"{name}-{n}.tar.xz", os.urandom(64), "public") for n in range(count)]
    system.upload(files, **options)
    system.indexer.run_once(check=False)
    return files


def test_the_site_followed_pass_by_pass_is_the_site_rebuilt(
    system: System, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = system.regions.index
    job = SiteJob(store)
    job.refresh()
    original = system.indexer.run_once

    def pass_then_refresh(**options: Any) -> Any:
        report = original(**options)
        job.refresh()
        return report

    system.indexer.run_once = pass_then_refresh  # type: ignore[method-assign]
    a_history(system, tmp_path)
    job.refresh()  # after the last management change
    followed = site_objects(store)
    assert any("/f/" in key for key in followed)
    forget_the_site(store)
    render_site(store)
    assert site_objects(store) == followed
    # And `tooltool-indexer rebuild`, from the blobs, records and log alone.
    forget_derived_state(store)
    forget_the_site(store)
    environ = {**cli_environ(system, request), "TOOLTOOL_RENDER_SITE": "1"}
    assert main(["rebuild"], environ) == EXIT_OK
    assert site_objects(store) == followed


def test_a_new_batch_renders_and_writes_only_what_it_touches(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        batch_of(system, 90, f"tool{n}", message=f"batch {n}")
    recording = RecordingStore(system.regions.index)
    job = SiteJob(recording)
    job.refresh()
    rendered: list[str] = []
    real_render = site_job.render

    def counted(env: Any, spec: Any) -> bytes:
        rendered.append(getattr(spec, "template", "asset"))
        return real_render(env, spec)

    monkeypatch.setattr(site_job, "render", counted)
    [new] = batch_of(system, 1, "newest", message="the newest", client_id="everything")
    recording.calls.clear()
    assert job.refresh() is not None
    slug = uploader_slug("everything")
    touched = {
        f"f/{new.digest}/index.html",
        "index.html",
        "files/index.html",
        "files/3/index.html",  # 271 files: the newest numbered page
        "batches/index.html",
        "batches/1/index.html",
        "uploaders/index.html",
        f"u/{slug}/index.html",
    }
    for view in ("public", "internal"):
        written = {
            key.removeprefix(f"site/{view}/")
            for key in recording.writes()
            if key.startswith(f"site/{view}/")
        }
        assert f"f/{new.digest}/index.html" in written
        # The search bundle: a fragment for each new page, and the index chunks and
        # metadata naming them; none of the others, nor Pagefind's scripts.
        search = {path for path in written if path.startswith("pagefind/")}
        assert len([path for path in search if path.startswith("pagefind/fragment/")]) == 2
        assert not [path for path in search if path.endswith((".js", ".css", ".pagefind"))]
        written -= search
        assert {path for path in written if not path.startswith("b/")} <= touched, view
        assert len([path for path in written if path.startswith("b/")]) == 1
    assert len(rendered) < 30  # the pages above, in two views, not the 270 others
    # The index objects and the audit log are not read again: only what changed.
    reads = recording.keys("get")
    assert len([key for key in reads if key.startswith("index/")]) == 1


def test_a_pass_with_nothing_new_writes_nothing(system: System) -> None:
    batch_of(system, 3, "tool")
    store = system.regions.index
    SiteJob(store).refresh()
    recording = RecordingStore(store)
    job = SiteJob(recording)
    assert job.refresh() is None  # a new process loads what the last one saved
    recording.calls.clear()
    assert job.refresh() is None
    # The position, the next feed entry (absent), the feed's head, the next record, the
    # log's head.
    assert len(recording.calls) == 5
    assert recording.writes() == []


def test_a_flip_leaves_the_public_site_and_comes_back(system: System) -> None:
    files = batch_of(system, 2, "flip", message="flip me")
    store = system.regions.index
    job = SiteJob(store)
    job.refresh()
    flip = [{"op": "set_visibility", "visibility": "internal"}]
    assert patch(system, files[0].digest, flip).status_code == 200
    job.refresh()
    public = site_objects(store)
    assert f"site/public/f/{files[0].digest}/index.html" not in public
    # The batch named an internal file: its message is the internal view's alone.
    assert not any(b"flip me" in page for key, page in public.items() if "/public/" in key)
    assert any(b"flip me" in page for key, page in public.items() if "/internal/" in key)
    back = [{"op": "set_visibility", "visibility": "public"}]
    assert patch(system, files[0].digest, back).status_code == 200
    job.refresh()
    assert f"site/public/f/{files[0].digest}/index.html" in site_objects(store)
    followed = site_objects(store)
    forget_the_site(store)
    render_site(store)
    assert site_objects(store) == followed
