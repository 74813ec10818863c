"""Making URLs the legacy client can follow."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request


def absolute_url(url: str, request: Request) -> str:
    """Resolve a root-relative URL (the local store's) against the request's base URL.

    The result always has an explicit port unless it is https on 443: the
    legacy client connects to 443 for an ``http`` URL without one.
    """
    if url.startswith("/"):
        url = str(request.base_url).rstrip("/") + url
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.port is None and parts.hostname:
        parts = parts._replace(netloc=f"{parts.netloc}:80")
        return urlunsplit(parts)
    return url
