"""The site's search bundle: what each view's index holds, and the same bytes every build."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.site import pagefind_service, search
from indexer.site.model import build
from indexer.site.pagefind_service import PagefindError, PagefindService
from indexer.site.render import pages
from indexer.site.search import SearchBundle, SearchRecord, search_files, site_records
from tests.indexer.test_site import site_of, site_text
from tests.system import System, Uploaded

PUBLIC_MESSAGE = "Toolchains for the linux64 builds"
SECRET_MESSAGE = "the secret sdk message"
MIXED_MESSAGE = "a batch of both kinds"


def uploaded(system: System) -> dict[str, Uploaded]:
    """A public file, an internal one, and a batch of both (so not on the public site)."""
    files = {
        "public": Uploaded("clang-17.0.6-linux64.tar.xz", os.urandom(300), "public"),
        "internal": Uploaded("secret-sdk-9.zip", os.urandom(200), "internal"),
        "mixed-public": Uploaded("gcc-13-linux64.tar.xz", os.urandom(100), "public"),
        "mixed-internal": Uploaded("covert-tool-2.zip", os.urandom(150), "internal"),
    }
    system.upload([files["public"]], message=PUBLIC_MESSAGE)
    system.upload([files["internal"]], message=SECRET_MESSAGE, client_id="everything")
    system.upload(
        [files["mixed-public"], files["mixed-internal"]],
        message=MIXED_MESSAGE,
        client_id="everything",
    )
    system.indexer.run_once(check=False)
    return files


def bundle(system: System, view: str) -> dict[str, bytes]:
    """The view's search bundle, as render.pages() makes it."""
    site = site_of(system, view)
    return {path: data for path, data in pages(site) if path.startswith("pagefind/")}


def test_the_public_index_knows_no_internal_file(system: System) -> None:
    if system.regions.index.region != "local":
        pytest.skip("the index is built from the model, the same on both stores")
    files = uploaded(system)
    public = site_text(bundle(system, "public"))
    for file in (files["public"], files["mixed-public"]):
        assert file.digest in public
        assert file.name in public
    assert PUBLIC_MESSAGE in public
    assert "uploader" in public
    for file in (files["internal"], files["mixed-internal"]):
        for secret in (file.name, file.digest, file.digest[:16]):
            assert secret not in public, secret
    for secret in (SECRET_MESSAGE, MIXED_MESSAGE, "everything"):
        assert secret not in public, secret
    # Nor any word of theirs, as the index keeps words (lowercased, split at punctuation).
    for word in ("secret", "covert", "kinds"):
        assert word not in public.lower(), word
    # The internal index has them all: what the public one lacks, it lacks by design.
    internal = site_text(bundle(system, "internal"))
    for file in files.values():
        assert file.digest in internal
        assert file.name in internal
    for said in (PUBLIC_MESSAGE, SECRET_MESSAGE, MIXED_MESSAGE, "everything", "uploader"):
        assert said in internal


def test_the_same_site_makes_the_same_bundle(system: System) -> None:
    if system.regions.index.region != "local":
        pytest.skip("the index is built from the model, the same on both stores")
    uploaded(system)
    for view in ("public", "internal"):
        first = bundle(system, view)
        assert "pagefind/pagefind-ui.js" in first
        assert any(path.endswith(".pf_fragment") for path in first)
        assert bundle(system, view) == first, view


def records(count: int) -> list[SearchRecord]:
    return [
        SearchRecord(
            url=f"f/{number:0128x}/index.html",
            title=f"tool-{number}.tar.xz",
            text=f"tool-{number}.tar.xz\nsha512 {number:0128x}\nuploader-{number % 3}: {number}",
        )
        for number in range(count)
    ]


def test_records_in_any_order_make_the_same_bundle() -> None:
    ordered = search_files(records(50))
    assert search_files(reversed(records(50))) == ordered
    paths = [path for path, _ in ordered]
    assert paths == sorted(paths)
    assert all(path.startswith("pagefind/") for path in paths)
    assert sum(path.endswith(".pf_fragment") for path in paths) == 50


def test_a_bundle_is_built_again_only_when_its_records_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[int] = []

    def counted(found: list[SearchRecord], *, name: str) -> list[tuple[str, bytes]]:
        built.append(len(found))
        return search_files(found, name=name)

    monkeypatch.setattr(search, "search_files", counted)
    kept = SearchBundle()
    first = kept.files(records(3))
    assert kept.files(records(3)) == first
    assert kept.files(records(4)) != first
    assert built == [3, 4]


def test_records_follow_the_pages(system: System) -> None:
    if system.regions.index.region != "local":
        pytest.skip("the records are made from the model, the same on both stores")
    uploaded(system)
    site = site_of(system, "internal")
    found = site_records(site)
    rendered = {path for path, _ in pages(site)}
    assert [record.url for record in found] == sorted(record.url for record in found)
    assert {record.url for record in found} <= rendered
    assert len(found) == len(site.files) + len(site.batches)


def test_builds_from_a_thread_while_a_loop_runs() -> None:
    """The indexer runs in a thread of the gateway, whose main thread runs an event loop."""
    expected = search_files(records(3))
    built: list[list[tuple[str, bytes]]] = []

    async def serving() -> None:
        worker = threading.Thread(target=lambda: built.append(search_files(records(3))))
        worker.start()
        await asyncio.get_running_loop().run_in_executor(None, worker.join)
        built.append(search_files(records(3)))  # and inside a running loop itself

    asyncio.run(serving())
    assert built == [expected, expected]


def test_a_refused_request_is_a_pagefind_error() -> None:
    with PagefindService() as service, pytest.raises(PagefindError, match="AddRecord"):
        service.request({"type": "AddRecord", "index_id": 99, "url": "x", "content": "y"})


def test_a_site_with_nothing_to_find_has_no_search_box() -> None:
    """Pagefind's scripts fail on an empty index: such a site gets neither."""
    site = dict(pages(build("public", [], [], {})))
    assert not any(path.startswith("pagefind/") for path in site)
    assert "assets/search.js" not in site
    assert b"pagefind" not in site["index.html"]


def test_a_new_record_builds_the_recent_bundle_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "STEP", 3)
    built: list[str] = []
    real = search.search_files

    def counted(records: Any, *, name: str = search.BUNDLE) -> list[tuple[str, bytes]]:
        built.append(name)
        return real(records, name=name)

    monkeypatch.setattr(search, "search_files", counted)
    records = [
        SearchRecord(f"f/{n:0128x}/index.html", f"tool-{n}", f"tool-{n}", f"2026-01-0{n + 1}")
        for n in range(5)
    ]
    bundle = search.SearchBundle()
    first = dict(bundle.files(records))
    assert sorted(built) == [search.BUNDLE, search.ARCHIVE]  # 3 archived, 2 recent
    assert any(path.startswith("pagefind-archive/") for path in first)
    built.clear()
    newer = SearchRecord(f"f/{9:0128x}/index.html", "tool-9", "tool-9", "2026-01-09")
    bundle.files([*records, newer])
    assert built == [search.BUNDLE]
    built.clear()
    # A record of the archive leaves (a file made internal): the archive is built again.
    bundle.files([*records[1:], newer])
    assert search.ARCHIVE in built


def fake_pagefind(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-pagefind"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(
    "body",
    [
        "exec sleep 600",  # never answers
        'head -c 2048 | "{real}" --service; exec sleep 600',  # answers, then wedges
    ],
)
def test_a_stuck_pagefind_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """A wedged binary fails the build in bounded time (the pass fails, the next one
    tries again) instead of holding the indexer, and its lease, for ever."""
    real = pagefind_service.get_executable()
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", fake_pagefind(tmp_path, body.format(real=real)))
    monkeypatch.setattr(pagefind_service, "IDLE_SECONDS", 1.0)
    records = [
        SearchRecord(f"f/{n:0128x}/index.html", f"t{n}", f"text {n} " * 50) for n in range(50)
    ]
    started = time.monotonic()
    with pytest.raises(PagefindError, match="stopped answering"):
        search_files(records)
    assert time.monotonic() - started < 20


def test_a_lone_surrogate_does_not_break_the_bundle() -> None:
    records = [SearchRecord("f/ab/index.html", "a\udcff.zip", "a\udcff.zip\nsha512 ab")]
    assert any(path.endswith(".pf_fragment") for path, _ in search_files(records))
