"""Making URLs the legacy client can follow."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.types import Scope

from gateway.errors import BadRequest
from gateway.forwarded import ADDRESS_HEADERS, TrustedProxies

# The longest DNS name (RFC 1035): a longer Host names no host. Refused rather than put in
# URLs, since every URL of a batch answer holds it (a 16 KiB Host made a 150 kB manifest's
# answer 16 MB).
MAX_HOST = 253
_MAX_BASES = 1024
_MAX_KEPT_HEADERS = 512  # bytes of address headers whose base is kept (the client's choice)


class PublicUrls:
    """Resolves root-relative URLs (the local store's) against the address the client used."""

    def __init__(self, proxies: TrustedProxies) -> None:
        self._proxies = proxies
        # Base URLs by what they are made of: the scheme, the root path, whether the
        # client is a trusted proxy, and the address headers as sent. Bounded: the
        # headers are the client's to choose.
        self._bases: dict[tuple[object, ...], str] = {}

    def base(self, scope: Scope) -> str:
        """The scheme, host, port and root path the client addressed; a 400 for a host
        longer than any name (:data:`MAX_HOST`)."""
        client = scope.get("client")
        headers = [
            (name, value) for name, value in scope.get("headers", ()) if name in ADDRESS_HEADERS
        ]
        key = (
            scope.get("scheme"),
            scope.get("root_path", ""),
            self._proxies.is_trusted(client[0] if client else None),
            *headers,
        )
        base = self._bases.get(key)
        if base is None:
            target = self._proxies.target_of(scope)
            if len(target.host) > MAX_HOST:
                raise BadRequest(f"The Host header names no host: over {MAX_HOST} characters")
            base = target.base_url + scope.get("root_path", "").rstrip("/")
            if sum(len(value) for _, value in headers) <= _MAX_KEPT_HEADERS:
                if len(self._bases) >= _MAX_BASES:
                    self._bases.clear()
                self._bases[key] = base
        return base

    def absolute(self, url: str, request: Request) -> str:
        """An absolute URL with an explicit port unless it is https on 443: the
        legacy client connects to 443 for an ``http`` URL without one."""
        if url.startswith("/"):
            return self.base(request.scope) + url
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.port is None and parts.hostname:
            return urlunsplit(parts._replace(netloc=f"{parts.netloc}:80"))
        return url
