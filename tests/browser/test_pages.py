"""The site's pages in a real headless Chromium (Debian's, driven by Playwright): each
kind loads without console errors at desktop width and at 360 px, without sideways
scrolling, and the chart renders. Screenshots land in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from indexer.site.job import render_site
from indexer.site.model import uploader_slug
from tests.conftest import LiveServer, free_port
from tests.gateway.test_manage import patch
from tests.system import System, Uploaded

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# As the machine's notes advise: no background connections (the network is closed).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1280, 800), "phone": (360, 740)}

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip("needs Debian's chromium: apt-get install chromium", allow_module_level=True)

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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
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


def watch_console(page: Any) -> list[str]:
    """The console errors and page errors `page` will log."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def visit(page: Any, url: str, name: str, problems: list[str]) -> None:
    response = page.goto(url)
    assert response is not None
    assert response.status == 200, name
    assert problems == [], (name, problems)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, (name, overflow)  # readable without scrolling sideways
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
