"""The site's search bundle: the same bytes from the same records, built from any thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from indexer.site import search
from indexer.site.pagefind_service import PagefindError, PagefindService
from indexer.site.search import SearchBundle, SearchRecord, search_files


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

    def counted(found: list[SearchRecord]) -> list[tuple[str, bytes]]:
        built.append(len(found))
        return search_files(found)

    monkeypatch.setattr(search, "search_files", counted)
    kept = SearchBundle()
    first = kept.files(records(3))
    assert kept.files(records(3)) is first
    assert kept.files(records(4)) != first
    assert built == [3, 4]


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
