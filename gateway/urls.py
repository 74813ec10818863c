"""Making URLs the legacy client can follow."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.types import Scope

from gateway.forwarded import TrustedProxies


class PublicUrls:
    """Resolves root-relative URLs (the local store's) against the address the client used."""

    def __init__(self, proxies: TrustedProxies) -> None:
        self._proxies = proxies

    def base(self, scope: Scope) -> str:
        """The scheme, host, port and root path the client addressed."""
        base = self._proxies.target_of(scope).base_url
        return base + scope.get("root_path", "").rstrip("/")

    def absolute(self, url: str, request: Request) -> str:
        """An absolute URL with an explicit port unless it is https on 443: the
        legacy client connects to 443 for an ``http`` URL without one."""
        if url.startswith("/"):
            return self.base(request.scope) + url
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.port is None and parts.hostname:
            return urlunsplit(parts._replace(netloc=f"{parts.netloc}:80"))
        return url
