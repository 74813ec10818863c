"""Signed URLs reused within a window: every caller gets at least the documented validity."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.download_urls import DownloadUrls, Redirect
from tests.conftest import make_local_store

DIGEST = "ab" * 64
KEY = f"sha512/{DIGEST}"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def expiry(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["expires"][0])


@settings(max_examples=200, deadline=None)
@given(
    expires_in=st.integers(1, 3600),
    reuse=st.integers(0, 3599),
    start=st.floats(1e9, 2e9),
    steps=st.lists(st.floats(0, 30), min_size=1, max_size=40),
)
def test_every_caller_gets_more_than_expires_in_minus_the_window(
    tmp_path_factory: pytest.TempPathFactory,
    expires_in: int,
    reuse: int,
    start: float,
    steps: list[float],
) -> None:
    reuse = min(reuse, expires_in - 1)
    clock = Clock(start)
    store = make_local_store(tmp_path_factory.mktemp("store"), clock=clock)
    urls = DownloadUrls(expires_in=expires_in, reuse_seconds=reuse, clock=clock)
    for step in steps:
        clock.now += step
        url = urls.redirect(store, KEY, lambda: "http://gw:80").url
        remaining = expiry(url) - clock.now
        assert remaining > expires_in - max(reuse, 1)  # whole seconds: at worst 1 s less
        assert remaining <= expires_in  # never valid longer than a fresh URL


def test_a_url_is_reused_within_the_window_and_signed_anew_after(tmp_path: Path) -> None:
    clock = Clock(1_000_000.25)
    store = make_local_store(tmp_path, clock=clock)
    urls = DownloadUrls(expires_in=60, reuse_seconds=5, clock=clock)
    first = urls.redirect(store, KEY, lambda: "http://gw:80")
    clock.now = 1_000_004.99
    assert urls.redirect(store, KEY, lambda: "http://gw:80") is first
    clock.now = 1_000_005.0
    second = urls.redirect(store, KEY, lambda: "http://gw:80")
    assert second.url != first.url
    assert expiry(second.url) == 1_000_065


def test_no_reuse_signs_every_time(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []

    def cdn(key: str, expires: int) -> str:
        calls.append((key, expires))
        return f"https://cdn.example/{key}?Expires={expires}"

    clock = Clock(50.5)
    urls = DownloadUrls(expires_in=60, reuse_seconds=0, cdn=cdn, clock=clock)
    store = make_local_store(tmp_path)
    for _ in range(3):
        redirect = urls.redirect(store, KEY, lambda: pytest.fail("a CDN URL is absolute"))
        assert redirect.url == f"https://cdn.example/{KEY}?Expires=110"
    assert calls == [(KEY, 110)] * 3


def test_root_relative_urls_are_kept_apart_per_address(tmp_path: Path) -> None:
    store = make_local_store(tmp_path)
    urls = DownloadUrls(expires_in=60, reuse_seconds=5)
    one = urls.redirect(store, KEY, lambda: "http://a:80")
    other = urls.redirect(store, KEY, lambda: "https://b/tooltool")
    assert one.url.startswith("http://a:80/__store__/local/")
    assert other.url.startswith("https://b/tooltool/__store__/local/")
    assert urls.redirect(store, KEY, lambda: "http://a:80") is one


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    store = make_local_store(tmp_path)
    clock = Clock(1000.0)
    urls = DownloadUrls(expires_in=60, reuse_seconds=30, max_entries=10, clock=clock)
    for index in range(100):
        urls.redirect(store, f"sha512/{index:0128x}", lambda: "http://a:80")
        assert len(urls._entries) <= 10
    clock.now += 30
    urls.redirect(store, KEY, lambda: "http://a:80")
    assert len(urls._entries) == 1  # the expired ones went first


def test_the_window_must_be_shorter_than_the_validity() -> None:
    with pytest.raises(ValueError, match="reuse_seconds"):
        DownloadUrls(expires_in=10, reuse_seconds=10)


def test_the_redirect_page_escapes_the_url() -> None:
    redirect = Redirect.to('https://x/y?a=1&b="2"')
    assert b'href="https://x/y?a=1&amp;b=&quot;2&quot;"' in redirect.body
    assert dict(redirect.raw_headers)[b"content-length"] == str(len(redirect.body)).encode()
