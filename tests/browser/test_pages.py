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


def test_every_page_kind_in_chromium(
    system: Any, site: tuple[str, dict[str, str]], browser: Any
) -> None:
    if system.regions.index.region != "local":
        pytest.skip("the pages are the same on both stores")
    url, paths = site
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


# The WCAG contrast ratio of each element's text with the background it is drawn on
# (the nearest ancestor's that is not transparent), for every element holding text.
CONTRASTS = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const [R, G, B] = [r, g, b].map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const background = (element) => {
    for (let at = element; at; at = at.parentElement) {
      const colour = rgb(getComputedStyle(at).backgroundColor);
      if (colour.length < 4 || colour[3] > 0) return colour;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const element of document.querySelectorAll("body *")) {
    const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !element.getClientRects().length) continue;
    const [a, b] = [luminance(rgb(getComputedStyle(element).color)),
                    luminance(background(element))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    found.push([element.tagName + "." + element.className, Math.round(ratio * 100) / 100]);
  }
  return found;
}"""


def test_text_has_enough_contrast_light_and_dark(
    system: Any, site: tuple[str, dict[str, str]], browser: Any
) -> None:
    """Every piece of text on every page kind, in light and dark mode: 4.5:1 at least
    (WCAG AA for body text)."""
    if system.regions.index.region != "local":
        pytest.skip("the pages are the same on both stores")
    url, paths = site
    for scheme in ("light", "dark"):
        page = browser.new_page(color_scheme=scheme)
        for kind, path in paths.items():
            page.goto(url + path)
            weak = [found for found in page.evaluate(CONTRASTS) if found[1] < 4.5]
            assert weak == [], (scheme, kind, weak)
        page.close()
