"""The cached download below Starlette: same checks, same bytes, and every cache bounded.

Each answer of :class:`gateway.fast_path.FastDownloads` is compared with the
app's own answer to the same request: the first request of a digest misses
the index cache and goes to the app; the next is a hit, answered by the fast
path, with the same signed URL (reused within its window).
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.credentials import Credentials, build_credentials
from gateway.fast_path import FastDownloads
from gateway.settings import AuthSettings
from gateway.tokens import TokenService
from indexer.index import read_index
from indexer.job import Indexer
from indexer.management import SetVisibility, apply
from indexer.schema import index_key
from indexer.stores import Regions
from tests.gateway.auth_helpers import basic, clients_file_entries, hawk
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import assert_problem
from tests.recording_store import RecordingStore

SECRET = "fast-path-jwt-secret-0123456789abcdef"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Delegations:
    """Wraps the app behind the fast path, counting the requests it passes on."""

    def __init__(self, app: Any) -> None:
        front = app
        while not isinstance(front, FastDownloads):
            front = front.app
        self.count = 0
        inner = front.app

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            self.count += 1
            await inner(scope, receive, send)

        front.app = counted


@pytest.fixture
def auth(tmp_path: Path) -> AuthSettings:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients_file_entries()))
    return AuthSettings(clients_file=path, jwt_secret=SECRET, trusted_proxies="10.0.0.0/8")


def client_for(app: Any, **kwargs: Any) -> TestClient:
    return TestClient(app, follow_redirects=False, raise_server_exceptions=False, **kwargs)


def token(client: TestClient, client_id: str = "reader") -> str:
    response = client.post("/token", headers={"Authorization": basic(client_id)})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def without_request_id(response: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]


def assert_same_answer(first: Any, second: Any) -> None:
    assert (first.status_code, second.status_code) == (302, 302)
    assert without_request_id(first) == without_request_id(second)
    assert first.content == second.content


CASES: dict[str, dict[str, Any]] = {
    "anonymous public": {"visibility": "public"},
    "HEAD": {"visibility": "public", "method": "HEAD"},
    "region named": {"visibility": "public", "query": "?region=local"},
    "unknown region named": {"visibility": "public", "query": "?region=mars&x=1"},
    "bearer internal": {"visibility": "internal", "bearer": True},
    "bearer public": {"visibility": "public", "bearer": True},
    "root path, prefix stripped": {"visibility": "public", "root_path": "/tooltool"},
    "root path, prefix kept": {
        "visibility": "public",
        "root_path": "/tooltool",
        "path_prefix": "/tooltool",
    },
    "trusted proxy": {
        "visibility": "public",
        "root_path": "/tooltool",
        "client": ("10.1.2.3", 5000),
        "headers": {"X-Forwarded-Host": "tooltool.example", "X-Forwarded-Proto": "https"},
    },
    "untrusted forwarding": {
        "visibility": "public",
        "client": ("192.0.2.1", 5000),
        "headers": {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    },
    "caller's request id": {"visibility": "public", "headers": {"X-Request-Id": "ci-job-42"}},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hit_is_answered_as_the_app_answered_the_miss(
    make_gateway: Callable[..., Gateway], auth: AuthSettings, case: str
) -> None:
    options = CASES[case]
    gateway = make_gateway(auth=auth, root_path=options.get("root_path", ""))
    digest = gateway.add(random_bytes(), options["visibility"])
    app = gateway.app()
    delegations = Delegations(app)
    client = client_for(app, client=options.get("client", ("testclient", 50000)))
    headers = dict(options.get("headers", {}))
    if options.get("bearer"):
        headers["Authorization"] = f"Bearer {token(client)}"
    path = f"{options.get('path_prefix', '')}/sha512/{digest}{options.get('query', '')}"
    method = options.get("method", "GET")
    before = delegations.count
    first = client.request(method, path, headers=headers)
    second = client.request(method, path, headers=headers)
    assert delegations.count == before + 1  # the miss went to the app; the hit did not
    assert_same_answer(first, second)
    if "X-Request-Id" in headers:
        assert second.headers["x-request-id"] == headers["X-Request-Id"]
    else:
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
    if case == "trusted proxy":
        assert first.headers["location"].startswith("https://tooltool.example/tooltool/__store__/")
    if case == "untrusted forwarding":
        assert first.headers["location"].startswith("http://testserver:80/__store__/")


def test_a_hit_in_another_region_is_answered_from_that_region(
    make_gateway: Callable[..., Gateway],
) -> None:
    gateway = make_gateway("east", "west")
    digest = gateway.add(random_bytes())
    client = client_for(gateway.app())
    for region in ("west", "east", "west"):
        for _ in range(2):
            location = client.get(f"/sha512/{digest}?region={region}").headers["location"]
            assert f"/__store__/{region}/" in location


REFUSALS: dict[str, tuple[str, dict[str, str], int]] = {
    "anonymous, internal file": ("internal", {}, 403),
    "Hawk": ("public", {"Authorization": "hawk"}, 302),
    "Basic": ("public", {"Authorization": basic("reader")}, 401),
    "unknown scheme": ("public", {"Authorization": "Negotiate abc"}, 401),
    "unverified token": ("public", {"Authorization": "Bearer not.a.token"}, 401),
    "token without the scope": ("internal", {"Authorization": "token:public-uploader"}, 403),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_the_fast_path_cannot_decide_goes_to_the_app(
    make_gateway: Callable[..., Gateway], auth: AuthSettings, case: str
) -> None:
    visibility, headers, status = REFUSALS[case]
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes(), visibility)
    public = gateway.add(random_bytes(), "public")
    app = gateway.app()
    delegations = Delegations(app)
    client = client_for(app)
    assert client.get(f"/sha512/{digest}").status_code in (302, 403)  # now cached
    assert client.get(f"/sha512/{public}").status_code == 302
    for _ in range(2):
        sent = dict(headers)
        authorization = sent.get("Authorization", "")
        if authorization == "hawk":
            sent["Authorization"] = hawk("reader", f"http://testserver:80/sha512/{digest}")
        elif authorization.startswith("token:"):
            sent["Authorization"] = f"Bearer {token(client, authorization[6:])}"
        before = delegations.count
        response = client.get(f"/sha512/{digest}", headers=sent)
        assert delegations.count == before + 1
        assert response.status_code == status
        if status != 302:
            assert_problem(response, status)


@pytest.mark.parametrize(
    "path",
    [
        "/sha512/" + "A" * 128,
        "/sha512/" + "g" * 128,
        "/sha512/" + "a" * 127,
        "/sha512/" + "a" * 127 + "%0A",
        "/sha512/" + "a" * 126 + "/a",
    ],
)
def test_malformed_digests_get_the_apps_400(gateway: Gateway, path: str) -> None:
    response = client_for(gateway.app()).get(path)
    assert_problem(response, 400)


def test_a_visibility_change_by_another_process_is_seen_within_the_cache_bound(
    gateway: Gateway,
) -> None:
    clock = Clock()
    digest = gateway.add(random_bytes(), "public")
    client = client_for(create_app(gateway.settings, gateway.regions, monotonic=clock))
    for _ in range(2):
        assert client.get(f"/sha512/{digest}").status_code == 302
    # Another process (the CLI, another replica) makes it internal: this one is not told.
    apply(gateway.regions, digest, [SetVisibility("internal")], by="admin")
    clock.now += gateway.settings.index_cache_seconds - 0.5
    assert client.get(f"/sha512/{digest}").status_code == 302  # within the bound
    clock.now += 1
    assert_problem(client.get(f"/sha512/{digest}"), 403)
    assert_problem(client.get(f"/sha512/{digest}"), 403)


def test_a_patch_in_this_process_is_seen_at_once(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes(), "public")
    client = client_for(gateway.app())
    for _ in range(2):
        assert client.get(f"/sha512/{digest}").status_code == 302
    url = f"http://testserver:80/file/sha512/{digest}"
    body = json.dumps([{"op": "set_visibility", "visibility": "internal"}]).encode()
    response = client.patch(
        f"/file/sha512/{digest}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": hawk(
                "admin", url, "PATCH", body=body, content_type="application/json"
            ),
        },
    )
    assert response.status_code == 200, response.text
    assert_problem(client.get(f"/sha512/{digest}"), 403)


def test_an_expired_token_is_refused_though_it_was_cached(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    clock = Clock(2_000_000_000.0)
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes(), "internal")
    tokens = TokenService.hmac(SECRET, issuer="tooltool", audience="tooltool", lifetime=600,
                               max_lifetime=3600, leeway=30, clock=clock)  # fmt: skip
    credentials = Credentials(build_credentials(gateway.settings).provider, tokens)
    client = client_for(create_app(gateway.settings, gateway.regions, credentials=credentials))
    headers = {"Authorization": f"Bearer {token(client)}"}
    for _ in range(2):
        assert client.get(f"/sha512/{digest}", headers=headers).status_code == 302
    clock.now += 600 + 30 - 1
    assert client.get(f"/sha512/{digest}", headers=headers).status_code == 302
    clock.now += 2
    body = assert_problem(client.get(f"/sha512/{digest}", headers=headers), 401)
    assert "expired" in body["detail"]


def test_a_token_differing_from_a_cached_one_is_verified_in_full(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes(), "internal")
    client = client_for(gateway.app())
    good = token(client)
    for _ in range(2):
        assert client.get(f"/sha512/{digest}", headers={"Authorization": f"Bearer {good}"})
    head, payload, signature = good.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    response = client.get(f"/sha512/{digest}", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(response, 401)


def test_a_miss_costs_one_store_read_and_a_hit_none(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    recording = RecordingStore(gateway.regions.index)
    client = client_for(create_app(gateway.settings, Regions([recording])))  # type: ignore[list-item]
    assert client.get(f"/sha512/{digest}").status_code == 302
    assert recording.calls == [("get", index_key(digest))]
    for _ in range(5):
        assert client.get(f"/sha512/{digest}").status_code == 302
    assert len(recording.calls) == 1


def test_an_upload_is_downloadable_as_soon_as_the_embedded_indexer_writes_it(
    tmp_path: Path,
) -> None:
    from tests.conftest import make_local_store, make_system
    from tests.system import Uploaded

    system = make_system(
        make_local_store(tmp_path / "store"),
        tmp_path,
        embedded_indexer=True,
        indexer_interval=3600,
        index_cache_seconds=3600,
        index_negative_cache_seconds=3600,
    )
    upload = Uploaded("tool.tar.gz", random_bytes(100_000), "public")
    with system.client:  # runs the lifespan: the embedded indexer's thread
        assert system.redirect(upload.digest).status_code == 404  # remembered for an hour
        system.upload([upload])  # reports it complete: the indexer wakes
        for _ in range(1000):  # bounded: the answer comes at the index write, not in an hour
            if system.redirect(upload.digest).status_code == 302:
                break
            time.sleep(0.01)
        assert system.download(upload.digest) == (302, upload.data)


def test_request_ids_are_unique_and_32_hex(gateway: Gateway) -> None:
    digest = gateway.add(random_bytes())
    client = client_for(gateway.app())
    ids = {client.get(f"/sha512/{digest}").headers["x-request-id"] for _ in range(50)}
    ids |= {client.get("/sha512/bad").headers["x-request-id"] for _ in range(50)}
    assert len(ids) == 100
    assert all(len(rid) == 32 and set(rid) <= set(string.hexdigits.lower()) for rid in ids)


def test_reporting_a_known_file_complete_keeps_its_cached_answer(
    make_gateway: Callable[..., Gateway], auth: AuthSettings
) -> None:
    gateway = make_gateway(auth=auth)
    digest = gateway.add(random_bytes())
    app = gateway.app()
    delegations = Delegations(app)
    client = client_for(app)
    assert client.get(f"/sha512/{digest}").status_code == 302
    path = f"/upload/complete/sha512/{digest}"
    headers = {"Authorization": hawk("uploader", f"http://testserver:80{path}")}
    assert client.get(path, headers=headers).status_code == 202
    before = delegations.count
    assert client.get(f"/sha512/{digest}").status_code == 302
    assert delegations.count == before  # still the cached answer


def test_every_index_write_of_a_pass_is_reported(make_gateway: Callable[..., Gateway]) -> None:
    """Not only uploads: a consistency repair (every copy lost) too, or the gateway would
    keep redirecting to a copy that is gone for as long as it caches the file."""
    gateway = make_gateway("east", "west")
    digest = gateway.add(random_bytes())
    for store in gateway.regions:  # every copy lost (a lifecycle rule, an operator)
        store.delete(f"sha512/{digest}")
    written: list[str] = []
    Indexer(gateway.regions, on_index_written=written.append).run_once(check=True)
    found = read_index(gateway.regions.index, digest)
    assert found is not None
    assert found[0].instances == ()
    assert written == [digest]
