"""The local store's signed URLs: an untampered, unexpired URL is accepted; any change to
its method, path, expiry, signed headers or signature is refused, and so is an expired one."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.signing import STORE_ROUTE_PREFIX, SignatureError, UrlSigner
from tests.conftest import SIGNING_KEY
from tests.gateway.conftest import Gateway

NOW = 1_800_000_000
KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_./"

keys = st.text(KEY_CHARS, min_size=1, max_size=40)
regions = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
urls = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "PUT"]),
        "region": regions,
        "key": keys,
        "expires_in": st.integers(1, 7 * 24 * 3600),
        "content_type": st.none() | st.sampled_from(["application/octet-stream", "text/plain"]),
        "content_length": st.none() | st.integers(0, 5 * 1024**3),
    }
)


def signer(now: float = NOW) -> UrlSigner:
    return UrlSigner(SIGNING_KEY, clock=lambda: now)


def split(url: str) -> tuple[str, str, dict[str, str]]:
    """The region, key and query of a signed path, decoded as the gateway's router does."""
    parts = urlsplit(url)
    region, _, key = unquote(parts.path).removeprefix(STORE_ROUTE_PREFIX + "/").partition("/")
    return region, key, dict(parse_qsl(parts.query, keep_blank_values=True))


def accepted(method: str, region: str, key: str, params: dict[str, str], now: float) -> bool:
    try:
        signer(now).verify(method, region, key, params)
    except SignatureError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None)
@given(url=urls, elapsed=st.integers(0, 8 * 24 * 3600))
def test_a_url_is_accepted_as_signed_until_it_expires(url: dict[str, object], elapsed: int) -> None:
    method = str(url["method"])
    signed = signer().sign(method, str(url["region"]), str(url["key"]), **_options(url))
    region, key, params = split(signed)
    assert (region, key) == (url["region"], url["key"])
    within = elapsed <= int(str(url["expires_in"]))
    assert accepted(method, region, key, params, NOW + elapsed) is within
    if method == "GET":  # HEAD is served by the GET signature
        assert accepted("HEAD", region, key, params, NOW) is True


def _options(url: dict[str, object]) -> dict[str, object]:
    return {name: url[name] for name in ("expires_in", "content_type", "content_length")}


changes = st.sampled_from(
    ["method", "region", "key", "expires", "content-type", "content-length", "signature", "drop"]
)


@settings(max_examples=400, deadline=None, database=None)
@given(url=urls, what=changes, junk=st.text(min_size=1, max_size=4))
def test_any_change_is_refused(url: dict[str, object], what: str, junk: str) -> None:
    method = str(url["method"])
    signed = signer().sign(method, str(url["region"]), str(url["key"]), **_options(url))
    region, key, params = split(signed)
    if what == "method":
        method = "PUT" if method == "GET" else "GET"
    elif what == "region":
        region += junk
    elif what == "key":
        key += junk
    elif what == "drop":
        params.pop(sorted(params)[len(junk) % len(params)])
    elif what == "expires":
        params["expires"] = str(int(params["expires"]) + 1 + len(junk))
    else:
        params[what] = params.get(what, "") + junk
    assert not accepted(method, region, key, params, NOW)


def test_over_http_only_the_signed_url_reads_the_blob(gateway: Gateway) -> None:
    """Every one-character change to a signed URL is refused (403 or 404), unless it still
    names the same request once decoded (a percent-escape's case, say)."""
    data = b"signed bytes"
    digest = gateway.add(data)
    store = gateway.regions.index
    url = store.presign_get(f"sha512/{digest}", expires_in=60)
    url = url[url.index(STORE_ROUTE_PREFIX) :]  # the path and query: what the signature covers
    client = gateway.client()
    assert client.get(url).content == data
    original = _request(url)

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        position=st.integers(0, len(url) - 1),
        replacement=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    )
    def check(position: int, replacement: str) -> None:
        tampered = url[:position] + replacement + url[position + 1 :]
        answer = client.get(tampered)
        if answer.status_code == 200:
            # As sent: the client resolves what the change made of the URL (":__store__/…"
            # is a relative reference to the same path).
            assert _request(str(answer.request.url)) == original, tampered
            assert hashlib.sha512(answer.content).hexdigest() == digest
        else:
            assert answer.status_code in (400, 403, 404), (tampered, answer.status_code)
            assert answer.headers["content-type"] == "application/json"

    check()


def _request(url: str) -> tuple[str, str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    params = sorted(parse_qsl(parts.query, keep_blank_values=True))
    return unquote(parts.path), parts.fragment, [(n, v) for n, v in params if n in _SIGNED]


_SIGNED = {"expires", "signature", "content-type", "content-length"}
