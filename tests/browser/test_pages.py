"""The site's pages in a real headless Chromium (Debian's, driven by Playwright): each
kind loads without console errors at desktop width and at 360 px, without sideways
scrolling, and the chart renders. Screenshots land in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from indexer.site.job import render_site
from indexer.site.model import uploader_slug
from tests.browser.chromium import (
    CHROMIUM,
    FLAGS,
    VIEWPORTS,
    require_chromium,
    visit,
    watch_console,
)
from tests.conftest import LiveServer, free_port
from tests.gateway.test_manage import patch
from tests.system import System, Uploaded

require_chromium()
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def site(
    system: System, live_server: Callable[[Any, int], LiveServer]
) -> tuple[str, dict[str, str]]:
    """A gateway over a store with a few files, one deleted, and its site rendered."""
    files = [
        Uploaded("clang-17.0.6-linux64.tar.xz", os.urandom(3000), "public"),
        Uploaded("rust-1.74-linux64.tar.zst", os.urandom(2000), "public"),
        Uploaded("withdrawn.zip", os.urandom(500), "public"),
    ]
    batch = system.upload(files, message="Toolchains for the linux64 builds\n\nBug 1869.")
    system.indexer.run_once(check=False)
    assert patch(system, files[2].digest, [{"op": "delete_instances", "reason": "a bad build"}])
    render_site(system.regions.index)
    server = live_server(system.client.app, free_port())
    return server.url, {
        "home": "/",
        "files": "/files/",
        "file": f"/f/{files[0].digest}/",
        "deleted": f"/f/{files[2].digest}/",
        "batch": f"/b/{batch['id']}/",
        "batches": "/batches/",
        "uploader": f"/u/{uploader_slug('uploader')}/",
        "uploaders": "/uploaders/",
    }


def test_every_page_kind_in_chromium(system: Any, site: tuple[str, dict[str, str]]) -> None:
    if system.regions.index.region != "local":
        pytest.skip("the pages are the same on both stores")
    url, paths = site
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for size, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                problems = watch_console(page)
                for kind, path in paths.items():
                    visit(page, url + path, f"{kind}-{size}", problems)
                    if kind == "home":
                        chart = page.locator("svg.chart")
                        box = chart.bounding_box()
                        assert box is not None
                        assert box["width"] > 100, box
                        assert chart.locator("polyline").count() == 1
                    if kind == "deleted":
                        assert page.locator(".tombstone").is_visible()
                        assert page.locator("#curl").count() == 0  # never offered
                page.close()
        finally:
            browser.close()
