"""HMAC-signed, expiring URLs for the local directory store.

The local store has no server of its own: the gateway serves its objects at
``/__store__/<region>/<key>``, and only to holders of a URL signed here. The
signature covers the method, region, key, expiry and (for PUT) the content
type, so none of them can be changed without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from indexer.stores import StoreError

STORE_ROUTE_PREFIX = "/__store__"

Clock = Callable[[], float]


class SignatureError(StoreError):
    """A signed store URL that must be refused."""


class InvalidSignature(SignatureError):
    """The URL's signature is missing, malformed or does not match."""


class ExpiredSignature(SignatureError):
    """The URL's signature has expired."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a verified URL allows."""

    method: str
    region: str
    key: str
    expires: int
    content_type: str | None
    content_length: int | None


class UrlSigner:
    """Signs and verifies local-store URLs with one secret key."""

    def __init__(self, secret: bytes, *, clock: Clock = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the URL signing key must be at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def sign(
        self,
        method: str,
        region: str,
        key: str,
        *,
        expires_in: int,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> str:
        """The path and query of a URL allowing `method` on `key` for `expires_in` seconds."""
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        expires = int(self._clock()) + expires_in
        params = {"expires": str(expires)}
        if content_type is not None:
            params["content-type"] = content_type
        length = None if content_length is None else str(content_length)
        if length is not None:
            params["content-length"] = length
        params["signature"] = self._mac(method, region, key, expires, content_type, length)
        return f"{STORE_ROUTE_PREFIX}/{region}/{key}?{urlencode(params)}"

    def verify(
        self, method: str, region: str, key: str, params: Mapping[str, str]
    ) -> SignedRequest:
        """Check a request's query against its method, region and key."""
        signed_method = "GET" if method == "HEAD" else method
        raw_expires = params.get("expires", "")
        signature = params.get("signature")
        length = params.get("content-length")
        if (
            signature is None
            or not _is_number(raw_expires)
            or (length is not None and not _is_number(length))
        ):
            raise InvalidSignature("the URL is not signed")
        expires = int(raw_expires)
        content_type = params.get("content-type")
        expected = self._mac(signed_method, region, key, expires, content_type, length)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise InvalidSignature("the URL's signature does not match")
        if self._clock() > expires:
            raise ExpiredSignature("the URL has expired")
        content_length = None if length is None else int(length)
        return SignedRequest(signed_method, region, key, expires, content_type, content_length)

    def _mac(
        self,
        method: str,
        region: str,
        key: str,
        expires: int,
        content_type: str | None,
        content_length: str | None,
    ) -> str:
        fields = [method, region, key, str(expires), _typed(content_type), _typed(content_length)]
        message = "\n".join(["tooltool-url-v2", *fields])
        return hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _is_number(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 20


def _typed(value: str | None) -> str:
    # Distinguishes "nothing signed" from "signed an empty value".
    return "-" if value is None else "=" + value
