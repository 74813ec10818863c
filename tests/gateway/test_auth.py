"""Identity: Hawk (clients file and Taskcluster), Bearer JWTs, POST /token, scope checks."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import taskcluster
from starlette.testclient import TestClient

from gateway.settings import AuthSettings
from tests.conftest import LiveServer, free_port
from tests.gateway.auth_helpers import (
    CLIENTS,
    PREFIX,
    authorized_scopes_ext,
    basic,
    clients_file_entries,
    hawk,
)
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import FORBIDDEN_BODY, assert_problem
from tests.taskcluster_double import TaskclusterDouble

SECRET = "test-jwt-secret-0123456789abcdefghij"
BASE = "http://testserver:80"


@dataclass
class Deployment:
    gateway: Gateway
    client: TestClient
    double: TaskclusterDouble | None
    public: str
    internal: str

    def get(self, path: str, *, auth: str | None = None, **kwargs: Any):
        headers = kwargs.pop("headers", {})
        if auth is not None:
            headers["Authorization"] = auth
        return self.client.get(path, headers=headers, **kwargs)

    def hawk_get(self, client_id: str, path: str, **kwargs: Any):
        return self.get(path, auth=hawk(client_id, BASE + path), **kwargs)

    def token(self, client_id: str, body: dict | None = None) -> dict[str, Any]:
        response = post_token(self.client, client_id, body)
        assert response.status_code == 200, response.text
        return response.json()


def post_token(client: TestClient, client_id: str, body: dict | None = None, **hawk_options):
    content = json.dumps(body).encode() if body is not None else None
    headers = {
        "Authorization": hawk(
            client_id,
            f"{BASE}/token",
            "POST",
            body=content,
            content_type="application/json" if content else "",
            **hawk_options,
        )
    }
    if content is not None:
        headers["Content-Type"] = "application/json"
    return client.post("/token", content=content, headers=headers)


@pytest.fixture
def taskcluster_double(
    live_server: Callable[[Any, int], LiveServer],
) -> tuple[TaskclusterDouble, str]:
    double = TaskclusterDouble()
    for client_id, client in CLIENTS.items():
        double.add_client(client_id, client["accessToken"], client["scopes"])
    server = live_server(double.app(), free_port())
    return double, server.url


@pytest.fixture(params=["clients-file", "taskcluster"])
def provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[AuthSettings, TaskclusterDouble | None]:
    if request.param == "taskcluster":
        double, url = request.getfixturevalue("taskcluster_double")
        return AuthSettings(
            identity_provider="taskcluster", taskcluster_root_url=url, jwt_secret=SECRET
        ), double
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients_file_entries()))
    return AuthSettings(clients_file=path, jwt_secret=SECRET), None


@pytest.fixture
def deploy(
    make_gateway: Callable[..., Gateway], provider: tuple[AuthSettings, TaskclusterDouble | None]
) -> Callable[..., Deployment]:
    auth, double = provider
    return lambda **settings: make_deployment(make_gateway, auth, double, **settings)


def make_deployment(
    make_gateway: Callable[..., Gateway],
    auth: AuthSettings,
    double: TaskclusterDouble | None,
    **settings: Any,
) -> Deployment:
    gateway = make_gateway(auth=auth, **settings)
    public = gateway.add(random_bytes(), "public", "public.bin")
    internal = gateway.add(random_bytes(), "internal", "internal.bin")
    return Deployment(gateway, gateway.client(), double, public, internal)


@pytest.fixture
def deployment(deploy: Callable[..., Deployment]) -> Deployment:
    return deploy()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="tooltool", issuer="tooltool")


class TestDownloadMatrix:
    """public/internal by anonymous/Hawk/Bearer by right and wrong scopes."""

    def test_anonymous(self, deployment: Deployment) -> None:
        assert deployment.get(f"/sha512/{deployment.public}").status_code == 302
        response = deployment.get(f"/sha512/{deployment.internal}")
        assert_problem(response, 403)
        assert response.json() == FORBIDDEN_BODY

    @pytest.mark.parametrize("client_id", ["reader", "admin", "everything"])
    def test_hawk_with_scope(self, deployment: Deployment, client_id: str) -> None:
        for digest in (deployment.public, deployment.internal):
            assert deployment.hawk_get(client_id, f"/sha512/{digest}").status_code == 302

    def test_hawk_without_scope(self, deployment: Deployment) -> None:
        assert deployment.hawk_get("nobody", f"/sha512/{deployment.public}").status_code == 302
        response = deployment.hawk_get("nobody", f"/sha512/{deployment.internal}")
        assert response.json() == FORBIDDEN_BODY

    @pytest.mark.parametrize("client_id", ["reader", "admin", "everything"])
    def test_bearer_with_scope(self, deployment: Deployment, client_id: str) -> None:
        token = deployment.token(client_id)["token"]
        for digest in (deployment.public, deployment.internal):
            response = deployment.get(f"/sha512/{digest}", auth=f"Bearer {token}")
            assert response.status_code == 302

    def test_bearer_without_scope(self, deployment: Deployment) -> None:
        narrow = deployment.token("reader", {"scopes": [f"{PREFIX}/download/public"]})["token"]
        response = deployment.get(f"/sha512/{deployment.internal}", auth=f"Bearer {narrow}")
        assert response.json() == FORBIDDEN_BODY
        empty = deployment.token("nobody")["token"]
        response = deployment.get(f"/sha512/{deployment.internal}", auth=f"Bearer {empty}")
        assert response.json() == FORBIDDEN_BODY

    def test_without_anonymous_public_downloads(self, deploy: Callable[..., Deployment]) -> None:
        deployment = deploy(allow_anonymous_public_download=False)
        public = f"/sha512/{deployment.public}"
        assert deployment.get(public).json() == FORBIDDEN_BODY
        assert deployment.hawk_get("nobody", public).json() == FORBIDDEN_BODY
        assert deployment.hawk_get("reader", public).status_code == 302
        token = deployment.token("reader")["token"]
        assert deployment.get(public, auth=f"Bearer {token}").status_code == 302

    def test_invalid_credentials_are_401_even_for_public_files(
        self, deployment: Deployment
    ) -> None:
        public = f"/sha512/{deployment.public}"
        for auth in ("Bearer nonsense", 'Hawk id="x"', "Negotiate abc", basic("reader")):
            response = deployment.get(public, auth=auth)
            body = assert_problem(response, 401)
            assert body["detail"].startswith("Invalid credentials: ")
            assert "WWW-Authenticate" in response.headers


class TestToken:
    def test_hawk_exchange(self, deployment: Deployment) -> None:
        before = int(time.time())
        answer = deployment.token("reader")
        assert set(answer) == {"token", "expires", "scopes", "clientId"}
        assert answer["clientId"] == "reader"
        assert answer["scopes"] == sorted(CLIENTS["reader"]["scopes"])
        claims = claims_of(answer["token"])
        assert set(claims) == {"sub", "iss", "aud", "iat", "nbf", "exp", "jti", "scopes"}
        assert claims["sub"] == "reader"
        assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
        assert claims["exp"] - claims["iat"] == 900
        expires = dt.datetime.fromisoformat(answer["expires"].replace("Z", "+00:00"))
        assert int(expires.timestamp()) == claims["exp"]
        assert claims_of(deployment.token("reader")["token"])["jti"] != claims["jti"]

    def test_basic_exchange(self, deployment: Deployment) -> None:
        response = deployment.client.post("/token", headers={"Authorization": basic("admin")})
        assert response.status_code == 200
        assert response.json()["scopes"] == [f"{PREFIX}/*"]

    def test_wrong_basic_password(self, deployment: Deployment) -> None:
        auth = basic("admin", access_token="wrong-token-0123456789abc")
        response = deployment.client.post("/token", headers={"Authorization": auth})
        assert_problem(response, 401)
        assert "wrong-token" not in response.text

    def test_only_tooltool_scopes(self, deployment: Deployment) -> None:
        assert deployment.token("nobody")["scopes"] == []
        assert deployment.token("everything")["scopes"] == [f"{PREFIX}/*"]

    def test_narrowing(self, deployment: Deployment) -> None:
        wanted = [f"{PREFIX}/download/public", f"{PREFIX}/upload/internal"]
        answer = deployment.token("admin", {"scopes": wanted})
        assert answer["scopes"] == sorted(wanted)
        assert claims_of(answer["token"])["scopes"] == sorted(wanted)

    def test_scopes_not_held_are_left_out(self, deployment: Deployment) -> None:
        wanted = [f"{PREFIX}/download/internal", f"{PREFIX}/manage", f"{PREFIX}/*", "queue:*"]
        answer = deployment.token("reader", {"scopes": wanted})
        assert answer["scopes"] == [f"{PREFIX}/download/internal"]

    def test_lifetime(self, deployment: Deployment) -> None:
        short = claims_of(deployment.token("reader", {"expires_in": 60})["token"])
        assert short["exp"] - short["iat"] == 60
        capped = claims_of(deployment.token("reader", {"expires_in": 10**6})["token"])
        assert capped["exp"] - capped["iat"] == 3600

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"scopes": "x"}',
            b'{"scopes": [1]}',
            b'{"expires_in": 0}',
            b'{"expires_in": "60"}',
            b'{"expires_in": true}',
            b'{"other": 1}',
        ],
    )
    def test_bad_bodies(self, deployment: Deployment, body: bytes) -> None:
        headers = {"Authorization": basic("reader"), "Content-Type": "application/json"}
        assert_problem(deployment.client.post("/token", content=body, headers=headers), 400)

    def test_huge_body(self, deployment: Deployment) -> None:
        headers = {"Authorization": basic("reader"), "Content-Type": "application/json"}
        response = deployment.client.post("/token", content=b" " * 100_000, headers=headers)
        assert_problem(response, 413)

    def test_needs_credentials(self, deployment: Deployment) -> None:
        response = deployment.client.post("/token")
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Basic")

    def test_a_token_cannot_mint_tokens(self, deployment: Deployment) -> None:
        token = deployment.token("admin")["token"]
        response = deployment.client.post("/token", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401)

    def test_get_is_405(self, deployment: Deployment) -> None:
        assert_problem(deployment.client.get("/token"), 405)


class TestPermissions:
    def test_anonymous(self, deployment: Deployment) -> None:
        response = deployment.get("/__permissions__")
        assert response.json() == {"clientId": None, "scopes": [f"{PREFIX}/download/public"]}

    def test_hawk_and_bearer(self, deployment: Deployment) -> None:
        expected = {"clientId": "reader", "scopes": sorted(CLIENTS["reader"]["scopes"])}
        assert deployment.hawk_get("reader", "/__permissions__").json() == expected
        token = deployment.token("reader")["token"]
        assert deployment.get("/__permissions__", auth=f"Bearer {token}").json() == expected

    def test_authorized_scopes(self, deployment: Deployment) -> None:
        ext = authorized_scopes_ext([f"{PREFIX}/download/internal"])
        header = hawk("admin", f"{BASE}/__permissions__", ext=ext)
        body = deployment.get("/__permissions__", auth=header).json()
        assert body["scopes"] == sorted(
            [f"{PREFIX}/download/internal", f"{PREFIX}/download/public"]
        )

    def test_authorized_scopes_cannot_widen(self, deployment: Deployment) -> None:
        ext = authorized_scopes_ext([f"{PREFIX}/manage"])
        header = hawk("reader", f"{BASE}/__permissions__", ext=ext)
        assert_problem(deployment.get("/__permissions__", auth=header), 401)


class TestHawkRejections:
    def _rejected(self, deployment: Deployment, path: str, header: str, **kwargs: Any) -> dict:
        response = deployment.get(path, auth=header, **kwargs)
        return assert_problem(response, 401)

    def test_bad_mac(self, deployment: Deployment) -> None:
        path = f"/sha512/{deployment.internal}"
        header = hawk("reader", BASE + path, access_token="not-the-right-token-123456")
        self._rejected(deployment, path, header)

    def test_unknown_client(self, deployment: Deployment) -> None:
        path = f"/sha512/{deployment.internal}"
        self._rejected(deployment, path, hawk("stranger", BASE + path, access_token="x" * 20))

    def test_signed_for_another_path_host_port_or_method(self, deployment: Deployment) -> None:
        path = f"/sha512/{deployment.internal}"
        for url, method in (
            (f"{BASE}/sha512/{deployment.public}", "GET"),
            (f"http://other.example:80{path}", "GET"),
            (f"http://testserver:8080{path}", "GET"),
            (BASE + path, "POST"),
            (BASE + path + "?region=x", "GET"),
        ):
            self._rejected(deployment, path, hawk("reader", url, method))

    def test_replayed_nonce(self, deployment: Deployment) -> None:
        path = f"/sha512/{deployment.internal}"
        header = hawk("reader", BASE + path)
        assert deployment.get(path, auth=header).status_code == 302
        self._rejected(deployment, path, header)

    def test_stale_timestamp(self, deployment: Deployment) -> None:
        path = f"/sha512/{deployment.internal}"
        header = hawk("reader", BASE + path, timestamp=str(int(time.time()) - 3600))
        self._rejected(deployment, path, header)

    def test_payload_must_match_its_hash(self, deployment: Deployment) -> None:
        signed = json.dumps({"scopes": [f"{PREFIX}/download/public"]}).encode()
        header = hawk(
            "admin", f"{BASE}/token", "POST", body=signed, content_type="application/json"
        )
        response = deployment.client.post(
            "/token",
            content=json.dumps({"scopes": [f"{PREFIX}/*"]}).encode(),
            headers={"Authorization": header, "Content-Type": "application/json"},
        )
        assert_problem(response, 401)

    @pytest.mark.parametrize(
        "header",
        [
            'Hawk id="reader"',
            'Hawk id="reader", ts="1", nonce="n", mac="m", mac="m"',
            'Hawk id="reader", ts="1", nonce="n", mac="m", bogus="x"',
            'Hawk id="reader" ts="1"',
            "Hawk " + "x" * 5000,
            "Hawk",
        ],
    )
    def test_malformed_headers(self, deployment: Deployment, header: str) -> None:
        self._rejected(deployment, f"/sha512/{deployment.internal}", header)


class TestBehindProxies:
    def test_forwarded_headers_only_from_trusted_proxies(
        self, make_gateway: Callable[..., Gateway], tmp_path: Path
    ) -> None:
        path = tmp_path / "clients.json"
        path.write_text(json.dumps(clients_file_entries()))
        trusted = AuthSettings(clients_file=path, jwt_secret=SECRET, trusted_proxies="10.0.0.0/8")
        gateway = make_gateway(auth=trusted, root_path="/tooltool")
        digest = gateway.add(random_bytes(), "internal")
        # The client used https://tooltool.example/tooltool/...; the proxy stripped the prefix.
        url = f"https://tooltool.example:443/tooltool/sha512/{digest}"
        forwarded = {"X-Forwarded-Host": "tooltool.example", "X-Forwarded-Proto": "https"}
        for client_address, status in ((("10.1.2.3", 5000), 302), (("192.0.2.1", 5000), 401)):
            client = TestClient(
                gateway.app(),
                follow_redirects=False,
                raise_server_exceptions=False,
                client=client_address,
            )
            response = client.get(
                f"/sha512/{digest}", headers={"Authorization": hawk("reader", url), **forwarded}
            )
            assert response.status_code == status
            if status == 302:
                location = response.headers["location"]
                assert location.startswith("https://tooltool.example/tooltool/__store__/local/")


class TestTaskcluster:
    @pytest.fixture
    def deployment(
        self,
        make_gateway: Callable[..., Gateway],
        taskcluster_double: tuple[TaskclusterDouble, str],
    ) -> Deployment:
        double, url = taskcluster_double
        auth = AuthSettings(
            identity_provider="taskcluster", taskcluster_root_url=url, jwt_secret=SECRET
        )
        return make_deployment(make_gateway, auth, double)

    def test_bearer_downloads_make_no_taskcluster_call(self, deployment: Deployment) -> None:
        token = deployment.token("reader")["token"]
        assert deployment.double is not None
        calls = deployment.double.requests
        deployment.double.is_down = True
        for _ in range(10):
            response = deployment.get(f"/sha512/{deployment.internal}", auth=f"Bearer {token}")
            assert response.status_code == 302
        assert deployment.double.requests == calls

    def test_outage_is_503_for_hawk(self, deployment: Deployment) -> None:
        assert deployment.double is not None
        deployment.double.is_down = True
        response = deployment.hawk_get("reader", f"/sha512/{deployment.internal}")
        body = assert_problem(response, 503)
        assert "127.0.0.1" not in body["detail"]
        assert_problem(
            deployment.client.post("/token", headers={"Authorization": basic("reader")}), 503
        )

    def test_unreachable_taskcluster_is_503(self, make_gateway: Callable[..., Gateway]) -> None:
        auth = AuthSettings(
            identity_provider="taskcluster",
            taskcluster_root_url=f"http://127.0.0.1:{free_port()}",
            jwt_secret=SECRET,
        )
        gateway = make_gateway(auth=auth)
        response = gateway.client().get(
            "/__permissions__", headers={"Authorization": hawk("reader", f"{BASE}/__permissions__")}
        )
        assert_problem(response, 503)

    def test_temporary_credentials(self, deployment: Deployment) -> None:
        now = dt.datetime.now(dt.UTC)
        scopes = [f"{PREFIX}/download/internal"]
        temporary = taskcluster.createTemporaryCredentials(
            "admin",
            CLIENTS["admin"]["accessToken"],
            now - dt.timedelta(minutes=1),
            now + dt.timedelta(minutes=5),
            scopes,
        )
        options = {"rootUrl": "http://unused", "credentials": temporary}
        ext = taskcluster.Auth(options).makeHawkExt().decode()
        token = temporary["accessToken"].decode()
        header = hawk("admin", f"{BASE}/token", "POST", access_token=token, ext=ext)
        response = deployment.client.post("/token", headers={"Authorization": header})
        assert response.status_code == 200, response.text
        claims = claims_of(response.json()["token"])
        assert claims["scopes"] == scopes
        assert claims["exp"] <= (now + dt.timedelta(minutes=5)).timestamp()

    def test_tokens_never_outlive_the_credentials(self, deployment: Deployment) -> None:
        assert deployment.double is not None
        deployment.double.add_client(
            "brief", "brief-access-token-012345", CLIENTS["reader"]["scopes"], expires_in=120
        )
        response = deployment.client.post(
            "/token", headers={"Authorization": basic("brief", "brief-access-token-012345")}
        )
        claims = claims_of(response.json()["token"])
        assert claims["exp"] <= time.time() + 91  # the verifiers' leeway is kept inside


def test_embedded_default_creates_a_development_client(
    make_gateway: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = make_gateway()
    gateway.client()
    path = gateway.settings.stores.data_dir / ".clients.json"
    entries = json.loads(path.read_text())
    assert len(entries) == 1
    assert sorted(entries[0]["scopes"]) == sorted(
        f"{PREFIX}/{name}"
        for name in (
            "download/public",
            "download/internal",
            "upload/public",
            "upload/internal",
            "manage",
        )
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert str(path) in caplog.text
    assert entries[0]["accessToken"] not in caplog.text
    gateway.client()  # a second start keeps the file
    assert json.loads(path.read_text()) == entries
    client = gateway.client()
    answer = client.post(
        "/token",
        headers={"Authorization": basic(entries[0]["clientId"], entries[0]["accessToken"])},
    )
    assert answer.status_code == 200
    assert len(answer.json()["scopes"]) == 5


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class TestHostileCredentials:
    """Inputs found in review: each is a 401 (or 413), never a 500."""

    def test_non_ascii_basic(self, deployment: Deployment) -> None:
        for value in (b"Basic \xe9\xe9\xe9\xe9", b"Basic " + base64.b64encode(b"r\xff:\xfe")):
            response = deployment.client.post("/token", headers={"Authorization": value})
            assert_problem(response, 401)
        unicode_token = "Basic " + base64.b64encode("reader:pässwörd-0123456789".encode()).decode()
        assert_problem(
            deployment.client.post("/token", headers={"Authorization": unicode_token}), 401
        )

    @pytest.mark.parametrize("kid", [[1], {"a": 1}, 5, None])
    def test_odd_kids(self, deployment: Deployment, kid: Any) -> None:
        import hashlib
        import hmac

        def part(data: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        signing_input = part({"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + part({"sub": "x"})
        mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
        response = deployment.get(f"/sha512/{deployment.public}", auth=f"Bearer {token}")
        assert_problem(response, 401)

    def test_oversized_hashed_body_is_refused_while_reading(self, deployment: Deployment) -> None:
        header = 'Hawk id="nobody-at-all", ts="1", nonce="n", mac="m", hash="h"'

        def chunks():
            for _ in range(40):
                yield b"x" * 65536

        response = deployment.client.post(
            "/token", content=chunks(), headers={"Authorization": header}
        )
        assert_problem(response, 413)

    def test_huge_timestamp_and_deep_ext(self, deployment: Deployment) -> None:
        path = "/__permissions__"
        header = hawk("reader", BASE + path, timestamp="9" * 400)
        assert_problem(deployment.get(path, auth=header), 401)
        deep = base64.b64encode(b"[" * 1400).decode()
        assert_problem(deployment.get(path, auth=hawk("reader", BASE + path, ext=deep)), 401)

    def test_unknown_ids_and_bad_macs_look_alike(self, make_gateway, tmp_path: Path) -> None:
        path = tmp_path / "clients.json"
        path.write_text(json.dumps(clients_file_entries()))
        gateway = make_gateway(auth=AuthSettings(clients_file=path, jwt_secret=SECRET))
        client = gateway.client()
        url = f"{BASE}/__permissions__"
        unknown = client.get(
            "/__permissions__",
            headers={"Authorization": hawk("stranger", url, access_token="x" * 30)},
        )
        wrong = client.get(
            "/__permissions__",
            headers={"Authorization": hawk("reader", url, access_token="x" * 30)},
        )
        assert unknown.json()["detail"] == wrong.json()["detail"]

    def test_unhashed_bodies_are_refused(self, deployment: Deployment) -> None:
        header = hawk("admin", f"{BASE}/token", "POST")  # no payload hash
        response = deployment.client.post(
            "/token",
            content=json.dumps({"scopes": [f"{PREFIX}/manage"]}).encode(),
            headers={"Authorization": header, "Content-Type": "application/json"},
        )
        body = assert_problem(response, 401)
        assert "hash" in body["detail"]


def test_forwarded_values(make_gateway: Callable[..., Gateway]) -> None:
    from starlette.requests import Request

    from gateway.forwarded import TrustedProxies

    proxies = TrustedProxies.parse("10.0.0.0/8")

    def target(headers: dict[str, str]):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("10.0.0.1", 1),
            "scheme": "http",
            "server": ("gw", 8000),
        }
        return proxies.target(Request(scope))

    appended = target(
        {
            "Host": "gw:8000",
            "X-Forwarded-Host": "evil.example, tooltool.example",
            "X-Forwarded-Proto": "http, https",
        }
    )
    assert (appended.host, appended.scheme, appended.port) == ("tooltool.example", "https", 443)
    odd = target({"Host": "gw:8000", "X-Forwarded-Port": "9" * 5000})
    assert odd.port == 8000
    assert target({"Host": "gw:99999"}).port == 80


def test_an_ipv4_peer_of_a_dual_stack_socket_is_its_ipv4_address() -> None:
    from gateway.forwarded import TrustedProxies

    proxies = TrustedProxies.parse("127.0.0.0/8,10.0.0.0/8")
    assert proxies.is_trusted("::ffff:127.0.0.1")
    assert proxies.is_trusted("::ffff:10.1.2.3")
    assert not proxies.is_trusted("::ffff:192.0.2.1")
    assert not proxies.is_trusted("::1")  # loopback over IPv6 is not in an IPv4 network
