"""``POST /resolve``: a whole manifest answered as ``GET /sha512/<digest>`` answers each file."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.resolve import MAX_CONCURRENT_RESOLVES, MAX_ENTRIES, WRONG_ALGORITHM
from indexer.s3_store import S3Store
from indexer.schema import index_key
from indexer.stores import Regions
from tests.conftest import (
    clients_auth,
    make_local_store,
    make_system,
    settings_for,
    unreachable_s3_store,
)
from tests.gateway.auth_helpers import basic, hawk
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.stalled_bodies import answered_behind
from tests.gateway.test_download import (
    FORBIDDEN_BODY,
    INVALID_DIGEST_BODY,
    UNKNOWN,
    CountingStore,
    assert_problem,
    follow,
)
from tests.gateway.test_metrics import client_for, scrape, value
from tests.system import BASE, Uploaded

JSON = "application/json"


@dataclass
class Resolving:
    """A gateway holding a public and an internal file, and clients to call it with."""

    gateway: Gateway
    client: TestClient
    public: str
    internal: str
    data: dict[str, bytes]

    def token(self, client_id: str) -> str:
        answer = self.client.post("/token", headers={"Authorization": basic(client_id)})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])


def post(
    client: TestClient, manifest: Any, *, headers: dict[str, str] | None = None, query: str = ""
) -> Any:
    return client.post(f"/resolve{query}", content=json.dumps(manifest).encode(), headers=headers)


def hawk_post(client: TestClient, client_id: str, manifest: Any, *, query: str = "") -> Any:
    """The request as the legacy client signs a JSON body: payload hash, application/json."""
    body = json.dumps(manifest).encode()
    header = hawk(client_id, f"{BASE}/resolve{query}", "POST", body=body, content_type=JSON)
    return client.post(
        f"/resolve{query}", content=body, headers={"Authorization": header, "Content-Type": JSON}
    )


def files(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == ["files"]
    return list(body["files"])


def as_get_answers(client: TestClient, digest: str, headers: dict[str, str]) -> dict[str, Any]:
    """What ``GET /sha512/<digest>`` answers, in a resolve answer's shape."""
    response = client.get(f"/sha512/{quote(digest, safe='')}", headers=headers)
    if response.status_code == 302:
        return {"digest": digest, "url": response.headers["location"]}
    assert_problem(response, response.status_code)
    return {"digest": digest, "problem": response.json()}


@pytest.fixture
def make_resolving(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Callable[..., Resolving]:
    def make(*regions: str, **settings: Any) -> Resolving:
        # URLs reused for half an hour: resolve's and GET's are the same URL, always.
        defaults: dict[str, Any] = {
            "auth": clients_auth(tmp_path),
            "embedded_indexer": False,
            "download_expires_in": 3600,
            "signed_url_reuse_seconds": 1800,
        }
        gateway = make_gateway(*regions, **(defaults | settings))
        public_data, internal_data = random_bytes(), random_bytes()
        public = gateway.add(public_data, "public", "public.bin")
        internal = gateway.add(internal_data, "internal", "internal.bin")
        data = {public: public_data, internal: internal_data}
        return Resolving(gateway, gateway.client(), public, internal, data)

    return make


@pytest.fixture
def resolving(make_resolving: Callable[..., Resolving]) -> Resolving:
    return make_resolving()


def test_each_entry_is_answered_in_order_as_get_answers_it(resolving: Resolving) -> None:
    client, public, internal = resolving.client, resolving.public, resolving.internal
    manifest = [
        {"digest": internal, "algorithm": "sha512", "filename": "i.bin", "size": 1000},
        {"digest": "nope", "unpack": True},
        {"digest": public, "visibility": "internal", "anything": {"<script>": 1}},
        {"digest": UNKNOWN, "setup": "setup.sh", "version": "1"},
        {"digest": public, "algorithm": "md5"},
    ]
    answers = files(post(client, manifest))
    assert [answer["digest"] for answer in answers] == [entry["digest"] for entry in manifest]
    assert answers[0] == {"digest": internal, "problem": FORBIDDEN_BODY}
    assert answers[1] == {"digest": "nope", "problem": INVALID_DIGEST_BODY}
    assert set(answers[2]) == {"digest", "url"}  # nothing of the entry is echoed
    assert answers[2]["url"] == client.get(f"/sha512/{public}").headers["location"]
    assert answers[3]["problem"]["status"] == 404
    assert answers[3] == as_get_answers(client, UNKNOWN, {})
    wrong = answers[4]["problem"]
    assert (wrong["status"], wrong["detail"]) == (400, WRONG_ALGORITHM)
    assert wrong["title"] == f"400 Bad Request: {WRONG_ALGORITHM}"
    # The URL is absolute, with an explicit port, and downloads the bytes.
    assert answers[2]["url"].startswith("http://testserver:80/__store__/local/sha512/")
    redirect = client.get(f"/sha512/{public}")
    assert follow(client, redirect) == resolving.data[public]
    assert files(post(client, [])) == []


def test_internal_files_need_the_scope_hawk_and_bearer(resolving: Resolving) -> None:
    client, public, internal = resolving.client, resolving.public, resolving.internal
    manifest = [{"digest": internal}, {"digest": public}]
    by_hawk = files(hawk_post(client, "reader", manifest))
    bearer = {"Authorization": f"Bearer {resolving.token('reader')}"}
    by_token = files(post(client, manifest, headers=bearer))
    assert by_hawk == by_token
    assert by_token == [as_get_answers(client, entry["digest"], bearer) for entry in manifest]
    assert (
        follow(client, client.get(f"/sha512/{internal}", headers=bearer))
        == (resolving.data[internal])
    )
    # Authenticated, without the internal scope: GET's 403, no URL, no size.
    for answers in (
        files(hawk_post(client, "nobody", manifest)),
        files(
            post(client, manifest, headers={"Authorization": f"Bearer {resolving.token('nobody')}"})
        ),
    ):
        assert answers[0] == {"digest": internal, "problem": FORBIDDEN_BODY}
        assert "url" in answers[1]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-token",
        "Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        'Hawk id="reader", ts="1", nonce="n", mac="bWFj"',
        "Basic cmVhZGVyOnNlY3JldA==",
    ],
)
def test_invalid_credentials_are_the_requests_401(resolving: Resolving, authorization: str) -> None:
    response = post(
        resolving.client, [{"digest": resolving.public}], headers={"Authorization": authorization}
    )
    body = assert_problem(response, 401)
    assert body["detail"].startswith("Invalid credentials")
    assert response.headers["www-authenticate"] == 'Bearer realm="tooltool", Hawk'
    assert resolving.public not in response.text


def test_hawk_must_sign_the_body_it_came_with(resolving: Resolving) -> None:
    body = json.dumps([{"digest": resolving.internal}]).encode()
    signed = hawk("reader", f"{BASE}/resolve", "POST", body=b"[]", content_type=JSON)
    response = resolving.client.post(
        "/resolve", content=body, headers={"Authorization": signed, "Content-Type": JSON}
    )
    assert_problem(response, 401)
    unhashed = hawk("reader", f"{BASE}/resolve", "POST")
    response = resolving.client.post("/resolve", content=body, headers={"Authorization": unhashed})
    assert_problem(response, 401)


def test_anonymous_callers_without_public_downloads_get_gets_403s(
    make_resolving: Callable[..., Resolving],
) -> None:
    resolving = make_resolving(allow_anonymous_public_download=False)
    manifest = [{"digest": resolving.public}]
    assert files(post(resolving.client, manifest)) == [
        {"digest": resolving.public, "problem": FORBIDDEN_BODY}
    ]
    assert resolving.client.get(f"/sha512/{resolving.public}").json() == FORBIDDEN_BODY
    assert "url" in files(hawk_post(resolving.client, "reader", manifest))[0]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "The request body must be JSON"),
        (b'{"digest": "x"}', "The request body must be a JSON list of manifest entries"),
        (b'"[]"', "The request body must be a JSON list of manifest entries"),
        (b'[{"digest": "x"}, 1]', "Entry 1 of the manifest must be an object with a digest"),
        (b'[["digest"]]', "Entry 0 of the manifest must be an object with a digest"),
        (b'[{"filename": "a"}]', "Entry 0 of the manifest must have a digest, a string"),
        (b'[{"digest": null}]', "Entry 0 of the manifest must have a digest, a string"),
        (b'[{"digest": 5}]', "Entry 0 of the manifest must have a digest, a string"),
        (b'[{"digest": "\\udfff"}]', "The request body holds text that is not valid Unicode"),
        (b'[{"digest": "x", "size": NaN}]', "The request body must be JSON"),
        (b'[{"digest": "x", "size": 1e400}]', "The request body must be JSON"),
        (b'[{"digest": "x", "size": ' + b"9" * 5000 + b"}]", "The request body must be JSON"),
        (b"[" * 100_000, "The request body must be JSON"),
        (b'[{"digest": "\xff"}]', "The request body must be JSON"),
        (b'[{"digest": "\xed\xa0\x80"}]', "The request body holds text that is not valid Unicode"),
        (b'[{"digest\\u0000": "x"}]', "Entry 0 of the manifest must have a digest, a string"),
    ],
)
def test_a_body_that_is_no_manifest_is_the_requests_400(
    resolving: Resolving, body: bytes, detail: str
) -> None:
    response = resolving.client.post("/resolve", content=body)
    assert assert_problem(response, 400)["detail"] == detail


def test_past_the_entry_and_size_limits_a_413(resolving: Resolving) -> None:
    client = resolving.client
    at_most = [{"digest": UNKNOWN}] * MAX_ENTRIES
    assert len(files(post(client, at_most))) == MAX_ENTRIES
    body = assert_problem(post(client, [*at_most, {"digest": UNKNOWN}]), 413)
    assert body["detail"] == (
        f"A manifest may hold at most {MAX_ENTRIES} entries; this one holds {MAX_ENTRIES + 1}"
    )
    large = [{"digest": UNKNOWN, "filename": "x" * 2000}] * 600  # over 1 MiB
    assert_problem(post(client, large), 413)


def test_each_digest_is_looked_up_once(make_resolving: Callable[..., Resolving]) -> None:
    # No cache: every lookup the request makes reads the store.
    resolving = make_resolving(index_cache_seconds=0, index_negative_cache_seconds=0)
    counting = CountingStore(resolving.gateway.regions.index)
    resolving.gateway.regions = Regions([counting])  # type: ignore[list-item]
    client = resolving.gateway.client()
    digests = [resolving.public, resolving.internal, UNKNOWN]
    manifest = [{"digest": digests[position % 3]} for position in range(MAX_ENTRIES)]
    answers = files(hawk_post(client, "reader", manifest))
    assert [answer["digest"] for answer in answers] == [entry["digest"] for entry in manifest]
    assert answers[0] == answers[3] == answers[MAX_ENTRIES - 1]
    assert "url" in answers[1]
    assert answers[2]["problem"]["status"] == 404
    assert counting.gets == 3


def test_region_preferred_when_it_holds_a_copy(make_resolving: Callable[..., Resolving]) -> None:
    resolving = make_resolving("us-east-1", "us-west-2", root_path="/tooltool")
    client, public = resolving.client, resolving.public
    for query, region in (
        ("?region=us-west-2", "us-west-2"),
        ("?region=us-east-1", "us-east-1"),
        ("?region=eu-nowhere-1", "us-east-1"),
        ("?region=", "us-east-1"),
        ("", "us-east-1"),
    ):
        [answer] = files(
            client.post(f"/tooltool/resolve{query}", content=json.dumps([{"digest": public}]))
        )
        expected = f"http://testserver:80/tooltool/__store__/{region}/sha512/{public}?"
        assert answer["url"].startswith(expected), (query, answer)
        assert answer["url"] == client.get(f"/tooltool/sha512/{public}{query}").headers["location"]
        assert (
            follow(client, client.get(f"/tooltool/sha512/{public}{query}"))
            == resolving.data[public]
        )


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH"])
def test_other_methods_are_405_naming_post(resolving: Resolving, method: str) -> None:
    response = resolving.client.request(method, "/resolve")
    if method == "HEAD":
        assert response.status_code == 405
    else:
        assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


def test_an_unavailable_store_is_the_requests_503(resolving: Resolving) -> None:
    resolving.gateway.regions = Regions([unreachable_s3_store()])
    response = post(resolving.gateway.client(), [{"digest": "nope"}, {"digest": UNKNOWN}])
    body = assert_problem(response, 503)
    assert "127.0.0.1" not in body["detail"]
    assert response.headers["retry-after"] == "5"


def test_a_malformed_index_object_is_that_entrys_500(resolving: Resolving) -> None:
    store = resolving.gateway.regions.index
    store.put(index_key(resolving.public), b'{"schema_version": 1, "visibility": "public"}')
    answers = files(post(resolving.client, [{"digest": resolving.public}, {"digest": UNKNOWN}]))
    assert answers[0]["problem"] == resolving.client.get(f"/sha512/{resolving.public}").json()
    assert answers[0]["problem"]["status"] == 500
    assert answers[1]["problem"]["status"] == 404


def test_the_log_line_counts_entries_and_names_no_digest(
    resolving: Resolving, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = [{"digest": resolving.internal}, {"digest": resolving.public}, {"digest": "x"}]
    with caplog.at_level(logging.INFO):
        files(hawk_post(resolving.client, "nobody", manifest))
    [summary] = [record for record in caplog.records if record.name == "request.summary"]
    fields = summary.__dict__
    assert (fields["route"], fields["code"], fields["decision"]) == ("/resolve", 200, "ok")
    assert fields["client"] == "nobody"
    assert (fields["files"], fields["resolved"], fields["refused"]) == (3, 1, 2)
    assert "digest" not in fields
    for record in caplog.records:
        assert resolving.internal not in record.getMessage()
        assert resolving.internal not in json.dumps(record.__dict__, default=str)


def test_counted_under_its_route_with_the_urls_it_reuses(resolving: Resolving) -> None:
    client = client_for(resolving.gateway.app())
    public = resolving.public
    assert client.get(f"/sha512/{public}").status_code == 302  # signs the URL
    manifest = [{"digest": public}, {"digest": public}, {"digest": resolving.internal}]
    assert "url" in files(post(client, manifest))[0]  # reuses it, once for both entries
    assert_problem(post(client, {"digest": public}), 400)
    samples = scrape(client)
    requests = "tooltool_http_requests_total"
    assert value(samples, requests, method="POST", route="/resolve", status="200") == 1
    assert value(samples, requests, method="POST", route="/resolve", status="400") == 1
    assert value(samples, "tooltool_signed_urls_total", result="signed") == 1
    assert value(samples, "tooltool_signed_urls_total", result="reused") == 1
    text = client.get("/__metrics__").text
    assert public not in text
    assert resolving.internal not in text


# Digests a manifest may name: the stored ones, unknown ones, near misses and any text.
HEX = "0123456789abcdef"
_named = st.sampled_from(["public", "internal"])
_other = (
    st.just(UNKNOWN)
    | st.text(alphabet=HEX, min_size=128, max_size=128)
    | st.text(alphabet=HEX + "A\n ", min_size=127, max_size=129)
    | st.text(max_size=20)
)


def test_every_entry_is_what_get_answers_the_same_caller(resolving: Resolving) -> None:
    client = resolving.client
    stored = {"public": resolving.public, "internal": resolving.internal}
    callers = {
        "anonymous": {},
        "reader": {"Authorization": f"Bearer {resolving.token('reader')}"},
        "nobody": {"Authorization": f"Bearer {resolving.token('nobody')}"},
    }

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        caller=st.sampled_from(sorted(callers)),
        digests=st.lists(_named.map(stored.__getitem__) | _other, max_size=8),
    )
    def check(caller: str, digests: list[str]) -> None:
        # "." and ".." are dot segments: a GET never sends them as a digest (RFC 3986).
        assume(not any(digest in (".", "..") for digest in digests))
        headers = callers[caller]
        answers = files(post(client, [{"digest": digest} for digest in digests], headers=headers))
        assert answers == [as_get_answers(client, digest, headers) for digest in digests]

    check()


@pytest.mark.s3
def test_on_s3_the_url_downloads_the_bytes(s3_store: S3Store, tmp_path: Path) -> None:
    system = make_system(s3_store, tmp_path)
    public = Uploaded("public.bin", random_bytes(5000), "public")
    internal = Uploaded("internal.bin", random_bytes(3000), "internal")
    system.upload([public, internal])
    system.indexer.run_once(check=False)
    manifest = [{"digest": public.digest}, {"digest": internal.digest}]
    anonymous = files(post(system.client, manifest))
    assert anonymous[1] == {"digest": internal.digest, "problem": FORBIDDEN_BODY}
    answers = files(hawk_post(system.client, "reader", manifest))
    for answer, uploaded in zip(answers, (public, internal), strict=True):
        assert s3_store.bucket in answer["url"]
        assert "X-Amz-Signature=" in answer["url"]
        with urllib.request.urlopen(answer["url"], timeout=30) as fetched:
            assert fetched.read() == uploaded.data


def test_slow_bodies_hold_no_slot(resolving: Resolving) -> None:
    """Requests whose bodies never end (a slowloris) wait for their bodies without holding
    any of the requests handled at once: a whole manifest sent after them is answered."""
    manifest = json.dumps([{"digest": resolving.public}]).encode()
    status, body = answered_behind(
        resolving.gateway.app(), "/resolve", manifest, stalled=MAX_CONCURRENT_RESOLVES
    )
    assert status == 200
    location = resolving.client.get(f"/sha512/{resolving.public}").headers["location"]
    assert body["files"] == [{"digest": resolving.public, "url": location}]


def test_a_host_longer_than_any_name_is_refused_as_get_refuses_it(resolving: Resolving) -> None:
    """Every URL of an answer holds the Host the client sent: one longer than any DNS name
    (253 characters) is GET's 400, entry by entry, so a manifest naming one file a thousand
    times is never answered a hundred times its size."""
    client, public = resolving.client, resolving.public
    longest = "a" * 253
    [answer] = files(post(client, [{"digest": public}], headers={"Host": f"{longest}:8080"}))
    assert answer["url"].startswith(f"http://{longest}:8080/__store__/")
    manifest = [{"digest": public}] * MAX_ENTRIES
    for host in ("a" * 254, "a" * 16000):
        response = post(client, manifest, headers={"Host": host})
        refused = client.get(f"/sha512/{public}", headers={"Host": host})
        detail = assert_problem(refused, 400)["detail"]
        assert detail == "The Host header names no host: over 253 characters"
        assert files(response) == [{"digest": public, "problem": refused.json()}] * MAX_ENTRIES
        assert len(response.content) < 4 * len(json.dumps(manifest))


class _SlowToRead(CountingStore):
    """Reading one key takes `seconds` on the signer's clock (a slow store)."""

    def __init__(self, store: Any, key: str, clock: list[float], seconds: float) -> None:
        super().__init__(store)
        self._key, self._clock, self._seconds = key, clock, seconds

    def get(self, key: str) -> Any:
        if key == self._key:
            self._clock[0] += self._seconds
        return super().get(key)


def test_urls_are_signed_once_every_lookup_is_done(tmp_path: Path) -> None:
    """A URL is as fresh when the answer goes out as GET's would be: one file's slow lookup
    never ages the URLs of the files looked up before it."""
    now = [1_800_000_000.0]
    store = make_local_store(tmp_path / "local", clock=lambda: now[0])
    settings = settings_for(
        tmp_path / "data",
        auth=clients_auth(tmp_path),
        embedded_indexer=False,
        signed_url_reuse_seconds=0,  # every answer signs anew, at its own time
    )
    gateway = Gateway(Regions([store]), tmp_path, settings)
    fast, slow = gateway.add(random_bytes(), name="fast.bin"), gateway.add(random_bytes())
    gateway.regions = Regions([_SlowToRead(store, index_key(slow), now, 30)])  # type: ignore[list-item]
    client = gateway.client()
    answers = files(post(client, [{"digest": fast}, {"digest": slow}]))
    assert now[0] == 1_800_000_030.0  # the slow lookup took its 30 s
    assert [answer["url"] for answer in answers] == [
        client.get(f"/sha512/{digest}").headers["location"] for digest in (fast, slow)
    ]
    assert f"expires={1_800_000_030 + 60}&" in answers[0]["url"]
