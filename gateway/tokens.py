"""Short-lived JWTs: issued by ``POST /token`` for a verified identity, verified locally.

HS256 with a shared secret by default (every replica holds it); RS256,
ES256 or EdDSA with a private key as an option, whose public keys are served
at ``/.well-known/jwks.json`` under RFC 7638 thumbprint key ids, so keys can
rotate: sign with the new key, keep accepting the old public key until the
last token it signed has expired.

Verification is strict: only the configured algorithm (no ``none``, no
HMAC/asymmetric confusion), a known key id, every registered claim present,
the right issuer and audience, expiry and not-before with a small leeway.
Verified tokens are cached by their exact text, never past their expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from gateway.identity import AuthError, Identity
from indexer.config import SettingsError
from indexer.schema import utc_timestamp

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
_REQUIRED_CLAIMS = ["sub", "iss", "aud", "iat", "nbf", "exp", "jti"]
# Distinct (client id, scopes) pairs whose one copy the verified tokens share; past it
# the table starts over (tokens are ours, so a fleet has a few hundred such pairs).
_MAX_HOLDERS = 1024
# RFC 7638: the members a key's thumbprint covers, by key type.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


class InvalidToken(AuthError):
    """A bearer token that must be refused; the message says why, never the token."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token and what it grants, as ``POST /token`` answers it."""

    token: str
    client_id: str
    scopes: tuple[str, ...]
    expires: int

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "expires": utc_timestamp(self.expires),
            "scopes": list(self.scopes),
            "clientId": self.client_id,
        }


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The identity a valid token carries."""

    client_id: str
    scopes: frozenset[str]
    expires: int


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    verifying: Any
    jwk: dict[str, Any] | None


class TokenService:
    """Issues and verifies the gateway's JWTs with one signing key and its verification keys."""

    def __init__(
        self,
        *,
        algorithm: str,
        signing_key: Any,
        verification_keys: Iterable[_Key],
        issuer: str,
        audience: str,
        lifetime: int,
        max_lifetime: int,
        leeway: int = 30,
        cache_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithm = algorithm
        self._signing_key = signing_key
        self._keys = {key.kid: key for key in verification_keys}
        self._signing_kid = next(iter(self._keys)) if self._keys else None
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime
        self._max_lifetime = max_lifetime
        self._leeway = leeway
        self._clock = clock
        self._cache: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._cache_entries = cache_entries
        # A client renews its token every few minutes, with the same scopes: the cached
        # tokens share one copy of its id and scopes (about 500 of the 1,100 bytes a
        # cached token costs with two scopes; the cache holds up to `cache_entries`).
        self._holders: dict[tuple[str, frozenset[str]], tuple[str, frozenset[str]]] = {}

    @classmethod
    def hmac(cls, secret: str, **options: Any) -> TokenService:
        """HS256 with a shared secret."""
        if len(secret) < 32:
            raise SettingsError("TOOLTOOL_JWT_SECRET: must be at least 32 characters")
        key = secret.encode("utf-8")
        return cls(
            algorithm="HS256", signing_key=key, verification_keys=[_Key(None, key, None)], **options
        )

    @classmethod
    def asymmetric(
        cls,
        algorithm: str,
        private_pem: bytes,
        previous_public_pems: Iterable[bytes] = (),
        **options: Any,
    ) -> TokenService:
        """RS256, ES256 or EdDSA: sign with the private key, accept it and the previous keys."""
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise SettingsError(f"TOOLTOOL_JWT_ALGORITHM: unsupported algorithm {algorithm!r}")
        unusable = (ValueError, TypeError, AttributeError, jwt.exceptions.PyJWTError)
        try:
            private = serialization.load_pem_private_key(private_pem, password=None)
            signing = _public_key(algorithm, private.public_key())
            # A key of the wrong kind or curve fails here, not on every POST /token.
            jwt.encode({}, private, algorithm=algorithm)  # type: ignore[arg-type]
        except unusable as exc:
            raise SettingsError(
                f"TOOLTOOL_JWT_PRIVATE_KEY: unusable key for {algorithm}: {exc}"
            ) from None
        try:
            previous = [
                _public_key(algorithm, serialization.load_pem_public_key(pem))
                for pem in previous_public_pems
            ]
        except unusable as exc:
            raise SettingsError(
                f"TOOLTOOL_JWT_PREVIOUS_PUBLIC_KEYS: unusable key for {algorithm}: {exc}"
            ) from None
        return cls(
            algorithm=algorithm,
            signing_key=private,
            verification_keys=[signing, *previous],
            **options,
        )

    def _check_times(self, claims: dict[str, Any]) -> None:
        if not all(_number(claims[name]) for name in ("exp", "nbf", "iat")):
            raise InvalidToken("the token's times are malformed")
        now = self._clock()
        if claims["exp"] + self._leeway < now:
            raise InvalidToken("the token has expired")
        if claims["nbf"] - self._leeway > now:
            raise InvalidToken("the token is not yet valid")

    def jwks(self) -> dict[str, Any]:
        """The public verification keys (none for HS256: its secret is never shown)."""
        return {"keys": [key.jwk for key in self._keys.values() if key.jwk is not None]}

    def issue(
        self, identity: Identity, scopes: Iterable[str], *, expires_in: int | None
    ) -> IssuedToken:
        """A token for `identity` carrying `scopes`, living at most the configured lifetimes
        and never past the credentials it came from."""
        now = int(self._clock())
        lifetime = min(expires_in or self._lifetime, self._max_lifetime)
        expires = now + lifetime
        if identity.expires is not None:
            # Verifiers allow `leeway` seconds past exp; the credentials' end is firm.
            expires = min(expires, int(identity.expires) - self._leeway)
        if expires <= now:
            raise InvalidToken("the credentials have expired or expire too soon for a token")
        granted = tuple(sorted(set(scopes)))
        claims = {
            "sub": identity.client_id,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "scopes": list(granted),
        }
        headers = {"kid": self._signing_kid} if self._signing_kid else None
        token = jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers=headers)
        return IssuedToken(token, identity.client_id, granted, expires)

    def cached(self, token: str) -> VerifiedToken | None:
        """The identity in `token` if it was verified before and has not expired since;
        None when it must be verified (or refused) by :meth:`verify`."""
        cached = self._cache.get(token)
        if cached is not None and cached.expires + self._leeway >= self._clock():
            return cached
        return None

    def verify(self, token: str) -> VerifiedToken:
        """The identity in a valid token; :class:`InvalidToken` says what is wrong."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        self._cache.pop(token, None)  # expired, if there at all
        verified = self._verify(token)
        self._cache[token] = verified
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return verified

    def _verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.exceptions.InvalidTokenError, UnicodeEncodeError):
            # pyjwt encodes the text as UTF-8 first: a lone surrogate is no token either.
            raise InvalidToken("the token is malformed") from None
        algorithm = header.get("alg")
        if algorithm != self.algorithm:
            raise InvalidToken(f"the token's algorithm is not {self.algorithm}")
        kid = header.get("kid")
        key = self._keys.get(kid) if kid is None or isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the token's key id is unknown")
        try:
            claims = jwt.decode(
                token,
                key.verifying,
                algorithms=[self.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                # Times are checked below against the service's clock.
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.exceptions.PyJWTError as exc:
            raise InvalidToken(_reason(exc)) from None
        self._check_times(claims)
        scopes = claims.get("scopes")
        if (
            not isinstance(claims["sub"], str)
            or not isinstance(scopes, list)
            or not all(isinstance(scope, str) for scope in scopes)
        ):
            raise InvalidToken("the token's claims are malformed")
        client_id, shared_scopes = self._holder(claims["sub"], frozenset(scopes))
        return VerifiedToken(client_id, shared_scopes, int(claims["exp"]))

    def _holder(self, client_id: str, scopes: frozenset[str]) -> tuple[str, frozenset[str]]:
        """The one copy of this client id and scopes the cached tokens share."""
        key = (client_id, scopes)
        holder = self._holders.get(key)
        if holder is None:
            if len(self._holders) >= _MAX_HOLDERS:
                self._holders.clear()
            holder = self._holders[key] = key
        return holder


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _reason(exc: jwt.exceptions.PyJWTError) -> str:
    reasons: list[tuple[type[Exception], str]] = [
        (jwt.exceptions.InvalidAudienceError, "the token is for another audience"),
        (jwt.exceptions.InvalidIssuerError, "the token is from another issuer"),
        (jwt.exceptions.InvalidSignatureError, "the token's signature does not verify"),
        (jwt.exceptions.InvalidAlgorithmError, "the token's algorithm is not allowed"),
        (jwt.exceptions.MissingRequiredClaimError, "the token lacks a required claim"),
        (jwt.exceptions.DecodeError, "the token is malformed"),
    ]
    for kind, reason in reasons:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.exceptions.MissingRequiredClaimError):
                return f"{reason} ({exc.claim})"
            return reason
    return "the token is invalid"


def _public_key(algorithm: str, public: Any) -> _Key:
    jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(public))
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    jwk.update(kid=kid.decode("ascii"), use="sig", alg=algorithm)
    return _Key(jwk["kid"], public, jwk)
