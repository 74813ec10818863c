"""GET/HEAD /sha512/<digest>: the seed's checks, permissions, regions, caching, failures."""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from indexer.schema import index_key
from indexer.stores import Regions
from tests.conftest import unreachable_s3_store
from tests.gateway.conftest import PREFIX, FixedAuthenticator, Gateway, random_bytes

INVALID_DIGEST_BODY = {
    "detail": "Invalid sha512 digest",
    "instance": "about:blank",
    "status": 400,
    "title": "400 Bad Request: Invalid sha512 digest",
    "type": "about:blank",
    "error": {
        "name": "400 Bad Request: Invalid sha512 digest",
        "description": "Invalid sha512 digest",
    },
}
FORBIDDEN_DETAIL = (
    "You don't have the permission to access the requested resource. It is either"
    " read-protected or not readable by the server."
)
FORBIDDEN_BODY = {
    "detail": FORBIDDEN_DETAIL,
    "instance": "about:blank",
    "status": 403,
    "title": "403 Forbidden: " + FORBIDDEN_DETAIL,
    "type": "about:blank",
    "error": {"name": "403 Forbidden: " + FORBIDDEN_DETAIL, "description": FORBIDDEN_DETAIL},
}
UNKNOWN = "0" * 128


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status
    assert body["instance"] == "about:blank"
    assert body["type"] == "about:blank"
    assert body["title"].startswith(f"{status} ")
    assert body["title"].endswith(": " + body["detail"])
    assert body["error"] == {"name": body["title"], "description": body["detail"]}
    return body


def follow(client, response) -> bytes:
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.port is not None  # the legacy client needs an explicit port on http
    target = client.get(f"{location.path}?{location.query}")
    assert target.status_code == 200
    return target.content


class TestSeedChecks:
    def test_known_public_digest_redirects_to_the_bytes(self, gateway: Gateway) -> None:
        data = random_bytes()
        digest = gateway.add(data)
        client = gateway.client()
        response = client.get(f"/sha512/{digest}")
        assert response.status_code == 302
        location = response.headers["location"]
        # The legacy (Werkzeug) redirect page, byte for byte, and no other header.
        escaped = html.escape(location, quote=True)
        assert response.text == (
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
            "<title>Redirecting...</title>\n"
            "<h1>Redirecting...</h1>\n"
            f'<p>You should be redirected automatically to target URL: <a href="{escaped}">'
            f"{escaped}</a>.  If not click the link."
        )
        assert [name for name, _ in response.headers.multi_items()] == [
            "location", "cache-control", "content-length", "content-type", "x-request-id",
        ]  # fmt: skip
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert follow(client, response) == data
        # The same again, from the cache below Starlette (gateway/fast_path.py).
        again = client.get(f"/sha512/{digest}")
        assert (again.status_code, again.text) == (302, response.text)

    def test_known_internal_digest_is_forbidden(self, gateway: Gateway) -> None:
        digest = gateway.add(random_bytes(), "internal")
        response = gateway.client().get(f"/sha512/{digest}")
        assert_problem(response, 403)
        assert response.json() == FORBIDDEN_BODY
        assert "location" not in response.headers

    def test_invalid_digest(self, gateway: Gateway) -> None:
        response = gateway.client().get("/sha512/invalid")
        assert_problem(response, 400)
        assert response.json() == INVALID_DIGEST_BODY


def test_unknown_digest_is_not_found(gateway: Gateway) -> None:
    body = assert_problem(gateway.client().get(f"/sha512/{UNKNOWN}"), 404)
    assert UNKNOWN not in body["detail"]


def test_no_region_holding_a_copy_is_not_found(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    store = gateway.regions.index
    raw, _ = store.get(index_key(digest))
    store.put(index_key(digest), raw.replace(b'"instances":["local"]', b'"instances":[]'))
    assert_problem(gateway.client().get(f"/sha512/{digest}"), 404)


def test_head_redirects_without_a_body(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    response = gateway.client().head(f"/sha512/{digest}")
    assert response.status_code == 302
    assert response.headers["location"]
    assert response.content == b""


def test_signed_url_lives_download_expires_in(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(download_expires_in=17)
    digest = gateway.add(random_bytes())
    import time

    before = int(time.time())
    response = gateway.client().get(f"/sha512/{digest}")
    expires = int(parse_qs(urlsplit(response.headers["location"]).query)["expires"][0])
    assert before + 17 <= expires <= int(time.time()) + 17


class TestPermissions:
    def test_public_closed_to_anonymous_when_configured(
        self, make_gateway: Callable[..., Gateway]
    ) -> None:
        gateway = make_gateway(allow_anonymous_public_download=False)
        digest = gateway.add(random_bytes())
        assert gateway.client().get(f"/sha512/{digest}").json() == FORBIDDEN_BODY

    @pytest.mark.parametrize(
        "scope",
        [f"{PREFIX}/download/internal", f"{PREFIX}/download/*", f"{PREFIX}/*", "project:*"],
    )
    def test_internal_with_scope(self, gateway: Gateway, scope: str) -> None:
        data = random_bytes()
        digest = gateway.add(data, "internal")
        client = gateway.client(authenticator=FixedAuthenticator(scope))
        assert follow(client, client.get(f"/sha512/{digest}")) == data

    @pytest.mark.parametrize(
        "scope",
        [
            f"{PREFIX}/download/public",
            f"{PREFIX}/upload/internal",
            f"{PREFIX}/download/internal/extra",
            f"{PREFIX}/download/intern",
            "other:prefix/download/internal",
        ],
    )
    def test_internal_without_scope(self, gateway: Gateway, scope: str) -> None:
        digest = gateway.add(random_bytes(), "internal")
        client = gateway.client(authenticator=FixedAuthenticator(scope))
        assert client.get(f"/sha512/{digest}").json() == FORBIDDEN_BODY

    def test_configured_prefix(self, make_gateway: Callable[..., Gateway]) -> None:
        gateway = make_gateway(scope_prefix="my:tooltool")
        digest = gateway.add(random_bytes(), "internal")
        allowed = gateway.client(authenticator=FixedAuthenticator("my:tooltool/download/internal"))
        assert allowed.get(f"/sha512/{digest}").status_code == 302
        legacy = gateway.client(authenticator=FixedAuthenticator(f"{PREFIX}/download/internal"))
        assert legacy.get(f"/sha512/{digest}").status_code == 403


class TestRegions:
    def test_preferred_region(self, make_gateway: Callable[..., Gateway]) -> None:
        gateway = make_gateway("us-east-1", "us-west-2")
        data = random_bytes()
        digest = gateway.add(data)
        client = gateway.client()
        for region in ("us-east-1", "us-west-2"):
            response = client.get(f"/sha512/{digest}", params={"region": region})
            assert f"/__store__/{region}/sha512/{digest}?" in response.headers["location"]
            assert follow(client, response) == data

    @pytest.mark.parametrize("region", ["eu-nowhere-1", "", "../us-west-2", "x" * 5000])
    def test_unknown_region_falls_back(
        self, make_gateway: Callable[..., Gateway], region: str
    ) -> None:
        gateway = make_gateway("us-east-1", "us-west-2")
        digest = gateway.add(random_bytes())
        response = gateway.client().get(f"/sha512/{digest}", params={"region": region})
        assert "/__store__/us-east-1/" in response.headers["location"]

    def test_region_without_a_copy_falls_back(self, make_gateway: Callable[..., Gateway]) -> None:
        gateway = make_gateway("us-east-1", "us-west-2")
        digest = gateway.add(random_bytes())
        store = gateway.regions.index
        raw, _ = store.get(index_key(digest))
        store.put(index_key(digest), raw.replace(b'"us-east-1",', b""))
        response = gateway.client().get(f"/sha512/{digest}", params={"region": "us-east-1"})
        assert "/__store__/us-west-2/" in response.headers["location"]


class CountingStore:
    """Passes calls through to a real store, counting index reads."""

    def __init__(self, store) -> None:
        self._store = store
        self.region = store.region
        self.gets = 0

    def get(self, key: str):
        self.gets += 1
        return self._store.get(key)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


class TestIndexCache:
    def test_hot_digest_costs_no_store_call(self, gateway: Gateway) -> None:
        digest = gateway.add(random_bytes())
        counting = CountingStore(gateway.regions.index)
        gateway.regions = Regions([counting])  # type: ignore[list-item]
        client = gateway.client()
        for _ in range(5):
            assert client.get(f"/sha512/{digest}").status_code == 302
        assert counting.gets == 1

    def test_unknown_digests_are_cached_too(self, gateway: Gateway) -> None:
        counting = CountingStore(gateway.regions.index)
        gateway.regions = Regions([counting])  # type: ignore[list-item]
        client = gateway.client()
        for _ in range(3):
            assert client.get(f"/sha512/{UNKNOWN}").status_code == 404
        assert counting.gets == 1

    def test_invalid_digests_never_reach_the_store(self, gateway: Gateway) -> None:
        counting = CountingStore(gateway.regions.index)
        gateway.regions = Regions([counting])  # type: ignore[list-item]
        gateway.client().get("/sha512/" + "A" * 128)
        assert counting.gets == 0

    def test_staleness_is_bounded(self, make_gateway: Callable[..., Gateway]) -> None:
        gateway = make_gateway(index_cache_seconds=0, index_negative_cache_seconds=0)
        client = gateway.client()
        data = random_bytes()
        import hashlib

        digest = hashlib.sha512(data).hexdigest()
        assert client.get(f"/sha512/{digest}").status_code == 404
        gateway.add(data)
        assert client.get(f"/sha512/{digest}").status_code == 302


def test_store_failure_is_503(gateway: Gateway) -> None:
    gateway.regions = Regions([unreachable_s3_store()])
    response = gateway.client().get(f"/sha512/{UNKNOWN}")
    body = assert_problem(response, 503)
    assert "127.0.0.1" not in body["detail"]


def test_malformed_index_object_is_500(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    digest = gateway.add(random_bytes())
    gateway.regions.index.put(index_key(digest), b'{"schema_version": 1, "visibility": "public"}')
    body = assert_problem(gateway.client().get(f"/sha512/{digest}"), 500)
    assert "schema" not in body["detail"]
    assert any("malformed index object" in record.getMessage() for record in caplog.records)


def test_root_path(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(root_path="/tooltool")
    data = random_bytes()
    digest = gateway.add(data)
    client = gateway.client()
    for path in (f"/tooltool/sha512/{digest}", f"/sha512/{digest}"):
        response = client.get(path)
        location = response.headers["location"]
        assert location.startswith("http://testserver:80/tooltool/__store__/local/sha512/")
        assert follow(client, response) == data
    assert assert_problem(client.get("/tooltool/sha512/nope"), 400) == INVALID_DIGEST_BODY
