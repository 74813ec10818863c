"""JWTs: only the exact tokens the service issued, unexpired, are accepted.

Tampered text, another algorithm (``none`` included), another key, and claims
with other times, audiences or issuers, or missing, are all refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.identity import Identity
from gateway.tokens import InvalidToken, TokenService

NOW = 1_800_000_000
SECRET = "a-test-secret-long-enough-for-hs512-" + "x" * 30
LEEWAY = 30
REQUIRED = ["sub", "iss", "aud", "iat", "nbf", "exp", "jti"]


def service(secret: str = SECRET) -> TokenService:
    return TokenService.hmac(
        secret,
        issuer="tooltool",
        audience="tooltool",
        lifetime=900,
        max_lifetime=3600,
        leeway=LEEWAY,
        clock=lambda: NOW,
    )


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "sub": "client",
        "iss": "tooltool",
        "aud": "tooltool",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "jti": "j",
        "scopes": ["project:releng:services/tooltool/api/download/internal"],
    }
    return {**base, **changes}


def refused(tokens: TokenService, token: str) -> bool:
    try:
        tokens.verify(token)
    except InvalidToken:
        return True
    return False


def segments(token: str) -> list[bytes]:
    """The decoded header, claims and signature, as any verifier reads them."""
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


@settings(max_examples=300, deadline=None, database=None)
@given(
    position=st.integers(min_value=0),
    replacement=st.characters(),
    scopes=st.lists(st.text(max_size=20), max_size=3),
)
def test_a_tampered_token_is_refused(position: int, replacement: str, scopes: list[str]) -> None:
    tokens = service()
    issued = tokens.issue(Identity("client", frozenset(), None), scopes, expires_in=None).token
    assert tokens.verify(issued).client_id == "client"
    position %= len(issued)
    tampered = issued[:position] + replacement + issued[position + 1 :]
    if tampered == issued:
        return
    if not refused(service(), tampered):
        # base64url's last character carries bits no decoder reads: such a twin
        # is accepted only because it says exactly what the issued token says.
        assert segments(tampered) == segments(issued)


@pytest.mark.parametrize("algorithm", ["none", "HS384", "HS512", "EdDSA", "HS256-other-key"])
def test_another_algorithm_or_key_is_refused(algorithm: str) -> None:
    if algorithm == "none":
        token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    elif algorithm == "EdDSA":
        token = jwt.encode(claims(), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA")
    elif algorithm == "HS256-other-key":
        token = jwt.encode(claims(), "another-secret-" + "y" * 50, algorithm="HS256")
    else:
        token = jwt.encode(claims(), SECRET, algorithm=algorithm)
    assert refused(service(), token)
    assert not refused(service(), jwt.encode(claims(), SECRET, algorithm="HS256"))


def test_a_token_signed_with_the_public_key_as_an_hmac_secret_is_refused() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tokens = TokenService.asymmetric(
        "EdDSA", pem, issuer="tooltool", audience="tooltool", lifetime=900, max_lifetime=3600
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = tokens.jwks()["keys"][0]["kid"]
    good = tokens.issue(Identity("client", frozenset(), None), [], expires_in=None).token
    assert not refused(tokens, good)
    # pyjwt refuses a PEM as an HMAC key; signed by hand, as an attacker would.
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    now = int(time.time())
    payload = claims(iat=now, nbf=now, exp=now + 900)
    with pytest.raises(InvalidToken, match="algorithm"):
        tokens.verify(_hs256_by_hand(header, payload, public))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


offsets = st.integers(-10_000, 10_000)


@settings(max_examples=300, deadline=None, database=None)
@given(
    exp=offsets,
    nbf=offsets,
    iat=offsets | st.just(0),
    audience=st.sampled_from(["tooltool", "other", ["tooltool"], ["other"], ""]),
    issuer=st.sampled_from(["tooltool", "other", "", "tooltool "]),
    missing=st.sets(st.sampled_from(REQUIRED), max_size=2),
)
def test_only_tokens_valid_now_for_this_audience_and_issuer_are_accepted(
    exp: int, nbf: int, iat: int, audience: Any, issuer: str, missing: set[str]
) -> None:
    values = claims(exp=NOW + exp, nbf=NOW + nbf, iat=NOW + iat, aud=audience, iss=issuer)
    for name in missing:
        del values[name]
    token = jwt.encode(values, SECRET, algorithm="HS256")
    # The oracle: RFC 7519 with the service's leeway; `aud` may be a list holding ours.
    expected = (
        not missing
        and exp + LEEWAY >= 0
        and nbf - LEEWAY <= 0
        and audience in ("tooltool", ["tooltool"])
        and issuer == "tooltool"
    )
    assert refused(service(), token) is not expected


def test_text_that_is_not_unicode_is_a_malformed_token() -> None:
    issued = service().issue(Identity("client", frozenset(), None), [], expires_in=None).token
    with pytest.raises(InvalidToken, match="malformed"):
        service().verify(issued[:10] + "\udfff" + issued[11:])
