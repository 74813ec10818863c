"""Hostile paths and inputs: always the right 4xx problem JSON, never a 500."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import quote

import pytest

from tests.conftest import LiveServer, free_port
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import INVALID_DIGEST_BODY, assert_problem

GOOD = "a" * 128

INVALID_DIGESTS = [
    "invalid",
    "A" * 128,
    "a" * 127 + "A",
    "a" * 127,
    "a" * 129,
    "g" * 128,
    "a" * 128 + "%0A",
    "a" * 128 + "%00",
    "%0A" + "a" * 128,
    "a" * 64 + "%20" + "a" * 63,
    "a" * 128 + "/",
    "a" * 128 + "/extra",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2findex",
    "...",
    "a" * 64 + "%2F" + "a" * 64,
    quote("é" * 128),
    quote("\uff10" * 128),  # fullwidth digits are not hex
    "%FF%FE",
    "a" * 60_000,
    "",
    "0x" + "a" * 126,
    "+" + "a" * 127,
]


@pytest.mark.parametrize("digest", INVALID_DIGESTS, ids=lambda value: value[:40])
def test_invalid_digests_are_400(gateway: Gateway, digest: str) -> None:
    response = gateway.client().get(f"/sha512/{digest}")
    assert_problem(response, 400)
    assert response.json() == INVALID_DIGEST_BODY


def test_valid_digest_shapes_are_looked_up(gateway: Gateway) -> None:
    assert_problem(gateway.client().get(f"/sha512/{GOOD}"), 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_unknown_methods_are_405(gateway: Gateway, method: str) -> None:
    response = gateway.client().request(method, f"/sha512/{GOOD}")
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/sha512",
        "/sha256/" + GOOD,
        "/SHA512/" + GOOD,
        "/file/sha512/" + GOOD,
        "/" + "x" * 60_000,
        "/__store__/",
        "/__store__/nowhere/sha512/" + GOOD,
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/%00",
    ],
    ids=lambda value: value[:40],
)
def test_unknown_paths_are_404(gateway: Gateway, path: str) -> None:
    assert_problem(gateway.client().get(path), 404)


@pytest.mark.parametrize(
    "query",
    ["region=" + "x" * 60_000, "region=%00", "region=us-east-1&region=local", "a=b" * 3000, "%%%"],
    ids=lambda value: value[:30],
)
def test_odd_query_strings_are_ignored(gateway: Gateway, query: str) -> None:
    digest = gateway.add(random_bytes())
    assert gateway.client().get(f"/sha512/{digest}?{query}").status_code == 302
    assert_problem(gateway.client().get(f"/sha512/{GOOD}?{query}"), 404)


class TestSignedStoreRoute:
    def test_unsigned_requests_are_refused(self, gateway: Gateway) -> None:
        digest = gateway.add(random_bytes())
        client = gateway.client()
        assert_problem(client.get(f"/__store__/local/sha512/{digest}"), 403)
        body = assert_problem(
            client.get(f"/__store__/local/sha512/{digest}?expires=9999999999&signature=00"), 403
        )
        assert "signature" in body["detail"]

    @pytest.mark.parametrize(
        "key", ["..%2F.url-signing-key", ".url-signing-key", ".tmp/x", "%2e%2e/%2e%2e/etc/passwd"]
    )
    def test_store_internals_are_unreachable(self, gateway: Gateway, key: str) -> None:
        store = gateway.regions.index
        url = store.signer.sign("GET", "local", key.replace("%2F", "/"), expires_in=60)
        response = gateway.client().get(url)
        # 404 where the client normalised the dots away before sending.
        assert response.status_code in (403, 404)
        assert_problem(response, response.status_code)

    def test_range_requests(self, gateway: Gateway) -> None:
        data = random_bytes(1000)
        digest = gateway.add(data)
        client = gateway.client()
        location = client.get(f"/sha512/{digest}").headers["location"]
        partial = client.get(location, headers={"Range": "bytes=10-19"})
        assert partial.status_code == 206
        assert partial.content == data[10:20]
        assert partial.headers["content-range"] == "bytes 10-19/1000"
        assert_problem(client.get(location, headers={"Range": "bytes=5000-"}), 416)
        assert_problem(client.get(location, headers={"Range": "lines=1-2"}), 400)
        assert_problem(client.get(location, headers={"Range": "bytes=9-2"}), 400)

    def test_verified_blobs_are_never_replaced(self, gateway: Gateway) -> None:
        data = random_bytes(10)
        digest = gateway.add(data)
        store = gateway.regions.index
        url = store.presign_put(f"sha512/{digest}", expires_in=60)
        response = gateway.client().put(
            url, content=b"x" * 10, headers={"Content-Type": "application/octet-stream"}
        )
        assert_problem(response, 409)
        assert store.get(f"sha512/{digest}")[0] == data

    def test_put_length_must_match(self, gateway: Gateway) -> None:
        store = gateway.regions.index
        url = store.presign_put("staging/x", expires_in=60)
        client = gateway.client()
        too_big = client.put(
            url,
            content=b"x",
            headers={"Content-Type": "application/octet-stream", "Content-Length": "99999999999"},
        )
        assert_problem(too_big, 413)


def test_malformed_http_is_refused_by_the_server(gateway: Gateway, live_server) -> None:
    """Raw garbage over a socket gets a 4xx from the server, and the server keeps serving."""
    port = free_port()
    server: LiveServer = live_server(gateway.client().app, port)
    requests = [
        b"GET /sha512/\x00\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"GET /sha512/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"x" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /sha512/?" + b"q" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for raw in requests:
        assert _exchange(port, raw).startswith(b"HTTP/1.1 4")
    for path in (b"/sha512/../../etc/passwd", b"/sha512/..", b"/sha512/%2e%2e%2f"):
        answer = _exchange(
            port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"Invalid sha512 digest" in answer
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/__lbheartbeat__", timeout=5) as response:
        assert response.status == 200


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # The server may answer and close before reading everything.
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in raw:
                break
    return answer


def test_if_range_does_not_bypass_range_checks(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes(100))
    client = gateway.client()
    location = client.get(f"/sha512/{digest}").headers["location"]
    etag = client.head(location).headers["etag"]
    for bad_range, status in (("lines=1-2", 400), ("bytes=5000-", 416), ("bytes=9-2", 400)):
        response = client.get(location, headers={"Range": bad_range, "If-Range": etag})
        assert_problem(response, status)


def test_non_ascii_content_length(gateway: Gateway) -> None:
    url = gateway.regions.index.presign_put("staging/x", expires_in=60)
    response = gateway.client().put(
        url,
        content=b"x",
        headers={"Content-Type": "application/octet-stream", "Content-Length": b"\xb2"},
    )
    assert_problem(response, 400)


def test_put_colliding_with_a_directory_is_409(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes(10))
    store = gateway.regions.index
    client = gateway.client()
    headers = {"Content-Type": "application/octet-stream"}
    for key in (f"sha512/{digest}/below", "index", "sha512"):
        url = store.presign_put(key, expires_in=60)
        assert_problem(client.put(url, content=b"x", headers=headers), 409)


def test_websocket_upgrades_are_plain_http(gateway: Gateway, live_server) -> None:
    digest = gateway.add(random_bytes(10))
    port = free_port()
    live_server(gateway.client().app, port)
    answer = _exchange(
        port,
        (
            f"GET /sha512/{digest} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    assert answer.startswith(b"HTTP/1.1 302"), answer[:100]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/upload", {"GET", "HEAD", "POST"}),
        (f"/file/sha512/{GOOD}", {"GET", "HEAD", "PATCH"}),
        ("/__store__/local/sha512/" + GOOD, {"GET", "HEAD", "PUT"}),
    ],
)
def test_a_405_allows_every_method_of_every_route_at_its_path(
    gateway: Gateway, path: str, allowed: set[str]
) -> None:
    response = gateway.client().request("OPTIONS", path)
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == allowed
