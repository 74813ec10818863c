"""The search box in a real headless Chromium, through the gateway: a filename or a digest
prefix typed on any page finds the file, and its link opens the file's page, on the public
site and under ``/internal/``; at 360 px and in dark mode too, without console errors.
Screenshots land in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from indexer.site import search as search_module
from indexer.site.job import render_site
from tests.browser.chromium import (
    VIEWPORTS,
    overflow,
    require_chromium,
    screenshot,
    visit,
    watch_console,
)
from tests.conftest import LiveServer, free_port
from tests.gateway.auth_helpers import basic
from tests.system import System, Uploaded

require_chromium()
sync_api = pytest.importorskip("playwright.sync_api")

RESULT = ".pagefind-ui__result-link"


@dataclass
class Searched:
    url: str
    clang: Uploaded
    rust: Uploaded
    internal: Uploaded
    batch: int
    token: str


@pytest.fixture(params=["one bundle", "archive and recent"])
def searched(
    system: System,
    live_server: Callable[[Any, int], LiveServer],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Searched:
    """A gateway over a store with two public files and an internal one, site rendered:
    with one search bundle a view, or with all but the newest record in the archive's."""
    if request.param == "archive and recent":
        monkeypatch.setattr(search_module, "STEP", 1)
    if system.regions.index.region != "local":
        pytest.skip("the pages are the same on both stores")
    clang = Uploaded("clang-17.0.6-linux64.tar.xz", os.urandom(3000), "public")
    rust = Uploaded("rust-1.74-linux64.tar.zst", os.urandom(2000), "public")
    internal = Uploaded("secret-sdk-9.zip", os.urandom(500), "internal")
    batch = system.upload([clang, rust], message="Toolchains for the linux64 builds\n\nBug 1869.")
    system.upload([internal], message="the secret sdk", client_id="everything")
    system.indexer.run_once(check=False)
    render_site(system.regions.index)
    archived = list(system.regions.index.list("site/public/pagefind-archive/"))
    assert bool(archived) == (request.param == "archive and recent")
    answer = system.client.post("/token", headers={"Authorization": basic("reader")})
    assert answer.status_code == 200, answer.text
    server = live_server(system.client.app, free_port())
    token = answer.json()["token"]
    return Searched(server.url, clang, rust, internal, batch["id"], token)


def search(page: Any, text: str) -> Any:
    """Type `text` into the page's search box; the result links once they show."""
    box = page.get_by_label("Search files, digests, uploaders and messages")
    box.fill(text)
    links = page.locator(RESULT)
    links.first.wait_for()
    return links


def titles(links: Any) -> list[str]:
    return [str(text) for text in links.all_inner_texts()]


def test_a_filename_and_a_digest_prefix_find_the_file(searched: Searched, browser: Any) -> None:
    for size, (width, height) in VIEWPORTS.items():
        page = browser.new_page(viewport={"width": width, "height": height})
        problems = watch_console(page)
        visit(page, searched.url + "/", f"search-home-{size}", problems)
        links = search(page, "clang-17.0.6")
        # The file, and the batch it came with.
        assert sorted(titles(links)) == sorted([searched.clang.name, f"Batch #{searched.batch}"])
        assert overflow(page) <= 1, size
        screenshot(page, f"search-results-{size}")
        links.get_by_text(searched.clang.name, exact=True).click()
        page.wait_for_url(f"**/f/{searched.clang.digest}/index.html")
        assert page.locator("h1").inner_text() == searched.clang.name
        # From a page two levels down, by the first 12 characters of the digest.
        page.goto(f"{searched.url}/f/{searched.rust.digest}/")
        links = search(page, searched.clang.digest[:12])
        assert titles(links) == [searched.clang.name]
        links.first.click()
        page.wait_for_url(f"**/f/{searched.clang.digest}/index.html")
        assert problems == [], (size, problems)
        page.close()


def test_the_public_search_never_finds_an_internal_file(searched: Searched, browser: Any) -> None:
    page = browser.new_page()
    problems = watch_console(page)
    visit(page, searched.url + "/files/", "search-public-files", problems)
    page.get_by_label("Search files, digests, uploaders and messages").fill("secret")
    message = page.locator(".pagefind-ui__message")
    sync_api.expect(message).to_contain_text("No results")
    assert page.locator(RESULT).count() == 0
    assert problems == [], problems
    page.close()


def test_the_internal_search_stays_under_internal(searched: Searched, browser: Any) -> None:
    context = browser.new_context(
        extra_http_headers={"Authorization": f"Bearer {searched.token}"},
        color_scheme="dark",
        viewport={"width": 360, "height": 740},
    )
    page = context.new_page()
    problems = watch_console(page)
    visit(page, searched.url + "/internal/batches/", "search-internal-dark-phone", problems)
    links = search(page, "secret-sdk")
    href = links.first.get_attribute("href")
    assert href == f"/internal/f/{searched.internal.digest}/index.html"
    # Dark mode reaches the search box: its input is as dark as the page.
    colours = page.evaluate(
        """() => [getComputedStyle(document.body).backgroundColor,
                  getComputedStyle(document.querySelector('.pagefind-ui__search-input'))
                    .backgroundColor]"""
    )
    assert colours[0] == colours[1] == "rgb(18, 18, 18)", colours
    assert overflow(page) <= 1
    screenshot(page, "search-internal-results-dark-phone")
    links.first.click()
    page.wait_for_url(f"**{href}")
    assert page.locator("h1").inner_text() == searched.internal.name
    assert problems == [], problems
    context.close()
