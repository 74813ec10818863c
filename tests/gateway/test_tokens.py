"""Bearer tokens: every rejection with its 401 problem, asymmetric keys, JWKS, rotation, cache."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.identity import Identity
from gateway.settings import AuthSettings
from gateway.tokens import _MAX_HOLDERS, InvalidToken, TokenService
from indexer.config import SettingsError
from tests.gateway.auth_helpers import PREFIX, clients_file_entries
from tests.gateway.conftest import Gateway, random_bytes
from tests.gateway.test_download import assert_problem

SECRET = "test-jwt-secret-0123456789abcdefghij"
INTERNAL = f"{PREFIX}/download/internal"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "reader",
        "iss": "tooltool",
        "aud": "tooltool",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scopes": [INTERNAL],
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def pem(private_key: Any) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unsigned(payload: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(payload)}."


@pytest.fixture
def hs_gateway(make_gateway: Callable[..., Gateway], tmp_path: Path) -> tuple[Gateway, str]:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients_file_entries()))
    gateway = make_gateway(auth=AuthSettings(clients_file=path, jwt_secret=SECRET))
    return gateway, gateway.add(random_bytes(), "internal")


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

REJECTIONS = {
    "alg none": (lambda: unsigned(claims(), {"alg": "none", "typ": "JWT"}), "algorithm"),
    "another HMAC": (lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "algorithm"),
    "bad signature": (
        lambda: jwt.encode(claims(), "another-secret-0123456789abcdefghij", algorithm="HS256"),
        "signature",
    ),
    "tampered payload": (
        lambda: _tamper(jwt.encode(claims(), SECRET, algorithm="HS256")),
        "signature",
    ),
    "expired": (
        lambda: jwt.encode(claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"),
        "expired",
    ),
    "not yet valid": (
        lambda: jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256"),
        "not yet valid",
    ),
    "wrong audience": (
        lambda: jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
        "audience",
    ),
    "wrong issuer": (
        lambda: jwt.encode(claims(iss="mallory"), SECRET, algorithm="HS256"),
        "issuer",
    ),
    "missing jti": (lambda: jwt.encode(claims(jti=None), SECRET, algorithm="HS256"), "jti"),
    "missing exp": (lambda: jwt.encode(claims(exp=None), SECRET, algorithm="HS256"), "exp"),
    "unknown kid": (
        lambda: jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "k1"}),
        "key id",
    ),
    "asymmetric instead": (
        lambda: jwt.encode(claims(), pem(RSA_KEY), algorithm="RS256"),
        "algorithm",
    ),
    "malformed": (lambda: "not.a.token", "malformed"),
    "times not numbers": (
        lambda: jwt.encode(claims(exp="tomorrow"), SECRET, algorithm="HS256"),
        "times",
    ),
    "garbage": (lambda: "%%%", "malformed"),
    "scopes not a list": (
        lambda: jwt.encode(claims(scopes=INTERNAL), SECRET, algorithm="HS256"),
        "claims",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejections(hs_gateway: tuple[Gateway, str], case: str) -> None:
    gateway, digest = hs_gateway
    make, reason = REJECTIONS[case]
    token = make()
    response = gateway.client().get(
        f"/sha512/{digest}", headers={"Authorization": f"Bearer {token}"}
    )
    body = assert_problem(response, 401)
    assert reason in body["detail"]
    assert token not in response.text
    assert SECRET not in response.text


def test_a_valid_token_is_accepted(hs_gateway: tuple[Gateway, str]) -> None:
    gateway, digest = hs_gateway
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")  # leeway
    response = gateway.client().get(
        f"/sha512/{digest}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 302


def test_hmac_jwks_is_empty(hs_gateway: tuple[Gateway, str]) -> None:
    gateway, _ = hs_gateway
    response = gateway.client().get("/.well-known/jwks.json")
    assert response.json() == {"keys": []}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["scopes"] = [f"{PREFIX}/*"]
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def service(**options: Any) -> TokenService:
    defaults = {"issuer": "tooltool", "audience": "tooltool", "lifetime": 900, "max_lifetime": 3600}
    return TokenService.hmac(SECRET, **(defaults | options))


class TestAsymmetric:
    @pytest.fixture(params=["RS256", "ES256", "EdDSA"])
    def keys(self, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any, Path]:
        algorithm = request.param
        private = {
            "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate,
        }[algorithm]()
        path = tmp_path / "private.pem"
        path.write_bytes(pem(private))
        return algorithm, private, path

    def test_issue_verify_and_jwks(
        self, make_gateway: Callable[..., Gateway], tmp_path: Path, keys: tuple[str, Any, Path]
    ) -> None:
        algorithm, private, path = keys
        clients = tmp_path / "clients.json"
        clients.write_text(json.dumps(clients_file_entries()))
        auth = AuthSettings(clients_file=clients, jwt_algorithm=algorithm, jwt_private_key=path)
        gateway = make_gateway(auth=auth)
        digest = gateway.add(random_bytes(), "internal")
        client = gateway.client()
        jwks = client.get("/.well-known/jwks.json").json()
        assert len(jwks["keys"]) == 1
        key = jwks["keys"][0]
        assert key["alg"] == algorithm
        assert key["use"] == "sig"
        assert "d" not in key  # never the private part
        from tests.gateway.auth_helpers import basic

        token = client.post("/token", headers={"Authorization": basic("reader")}).json()["token"]
        assert jwt.get_unverified_header(token)["kid"] == key["kid"]
        # An independent verifier, from the published JWKS alone
        public = jwt.PyJWK(key).key
        decoded = jwt.decode(token, public, algorithms=[algorithm], audience="tooltool")
        assert decoded["sub"] == "reader"
        response = client.get(f"/sha512/{digest}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 302
        # HS256 signed with the public key as its secret: the classic confusion
        forged = _hs_with_public_key(public_pem(private), key["kid"])
        response = client.get(f"/sha512/{digest}", headers={"Authorization": f"Bearer {forged}"})
        assert_problem(response, 401)

    def test_rotation(self, tmp_path: Path) -> None:
        options = {
            "issuer": "tooltool",
            "audience": "tooltool",
            "lifetime": 900,
            "max_lifetime": 3600,
        }
        old = TokenService.asymmetric("RS256", pem(RSA_KEY), **options)
        issued = old.issue(Identity("reader", frozenset()), [INTERNAL], expires_in=None)
        new = TokenService.asymmetric("RS256", pem(OTHER_RSA_KEY), [public_pem(RSA_KEY)], **options)
        assert new.verify(issued.token).scopes == frozenset({INTERNAL})
        assert len(new.jwks()["keys"]) == 2
        fresh = new.issue(Identity("reader", frozenset()), [], expires_in=None)
        with pytest.raises(InvalidToken, match="key id"):
            old.verify(fresh.token)

    def test_unusable_keys_fail_at_start(self) -> None:
        with pytest.raises(SettingsError, match=r"^TOOLTOOL_JWT_PRIVATE_KEY: "):
            TokenService.asymmetric(
                "ES256", pem(RSA_KEY), issuer="i", audience="a", lifetime=1, max_lifetime=1
            )
        with pytest.raises(SettingsError, match=r"^TOOLTOOL_JWT_PRIVATE_KEY: "):
            TokenService.asymmetric(
                "RS256", b"not a key", issuer="i", audience="a", lifetime=1, max_lifetime=1
            )
        with pytest.raises(SettingsError, match=r"^TOOLTOOL_JWT_SECRET: "):
            TokenService.hmac("short", issuer="i", audience="a", lifetime=1, max_lifetime=1)


def _hs_with_public_key(public: bytes, kid: str) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    import hashlib
    import hmac as hmac_module

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    signing_input = f"{part(header)}.{part(claims())}"
    signature = hmac_module.new(public, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


class TestCache:
    def test_verification_is_cached_until_expiry(self) -> None:
        now = [time.time()]
        tokens = service(clock=lambda: now[0], leeway=0)
        issued = tokens.issue(Identity("reader", frozenset()), [INTERNAL], expires_in=60)
        first = tokens.verify(issued.token)
        assert tokens.verify(issued.token) is first  # from the cache
        now[0] += 61
        with pytest.raises(InvalidToken, match="expired"):
            tokens.verify(issued.token)

    def test_tokens_never_outlive_credentials(self) -> None:
        now = time.time()
        tokens = service()
        identity = Identity("reader", frozenset(), expires=now + 300)
        issued = tokens.issue(identity, [], expires_in=None)
        assert issued.expires <= now + 300 - 30  # a verifier's leeway stays inside
        with pytest.raises(InvalidToken, match="expire"):
            tokens.issue(Identity("reader", frozenset(), expires=now + 20), [], expires_in=None)
        with pytest.raises(InvalidToken, match="expired"):
            tokens.issue(Identity("reader", frozenset(), expires=now - 1), [], expires_in=None)


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(SettingsError, match=r"^TOOLTOOL_JWT_PRIVATE_KEY: "):
        AuthSettings.from_environ({"TOOLTOOL_JWT_ALGORITHM": "RS256"})
    with pytest.raises(SettingsError, match=r"^TOOLTOOL_JWT_ALGORITHM: "):
        AuthSettings.from_environ({"TOOLTOOL_JWT_ALGORITHM": "none"})
    with pytest.raises(SettingsError, match=r"^TASKCLUSTER_ROOT_URL: "):
        AuthSettings.from_environ({"TOOLTOOL_IDENTITY_PROVIDER": "taskcluster"})
    with pytest.raises(SettingsError, match=r"^TOOLTOOL_TRUSTED_PROXIES: "):
        AuthSettings.from_environ({"TOOLTOOL_TRUSTED_PROXIES": "not-an-ip"})
    with pytest.raises(SettingsError, match=r"^TOOLTOOL_TOKEN_LIFETIME: "):
        AuthSettings.from_environ({"TOOLTOOL_TOKEN_LIFETIME": "7200"})
    assert (
        AuthSettings.from_environ({"TASKCLUSTER_ROOT_URL": "https://tc.example"}).identity_provider
        == "taskcluster"
    )


def test_cached_tokens_share_their_client_id_and_scopes() -> None:
    tokens = service()
    identity = Identity("reader", frozenset({INTERNAL}))
    issued = [tokens.issue(identity, [INTERNAL], expires_in=None).token for _ in range(50)]
    verified = [tokens.verify(token) for token in issued]
    assert {(each.client_id, each.scopes) for each in verified} == {
        ("reader", frozenset({INTERNAL}))
    }
    # One copy for all 50 (a renewed token costs the cache its own text and little more)
    assert len({id(each.scopes) for each in verified}) == 1
    assert len({id(each.client_id) for each in verified}) == 1


def test_the_shared_identities_stay_bounded() -> None:
    tokens = service()
    count = _MAX_HOLDERS + 100
    for number in range(count):
        identity = Identity(f"client-{number}", frozenset())
        token = tokens.issue(identity, [f"{INTERNAL}/{number}"], expires_in=None).token
        assert tokens.verify(token).scopes == {f"{INTERNAL}/{number}"}
    assert len(tokens._holders) <= _MAX_HOLDERS
