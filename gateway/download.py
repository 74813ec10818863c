"""``GET``/``HEAD /sha512/<digest>``: redirect to a short-lived signed URL of the blob, or refuse.

The order of checks keeps internal files private and the store unbothered:
the digest's form first (no store access for garbage), then the index object
(cached), then the caller's scope (:mod:`gateway.lookup`), then a region
holding a copy.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.errors import NotFound
from gateway.lookup import FileLookup
from gateway.urls import PublicUrls
from indexer.schema import blob_key
from indexer.stores import Regions

# The legacy (Werkzeug) redirect page, which the seed's first curl check shows.
_REDIRECT_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
    "<title>Redirecting...</title>\n"
    "<h1>Redirecting...</h1>\n"
    '<p>You should be redirected automatically to target URL: <a href="{url}">{url}</a>.'
    "  If not click the link."
)


class Downloads:
    """The download endpoint over the configured regions and their index."""

    def __init__(
        self, *, regions: Regions, lookup: FileLookup, urls: PublicUrls, expires_in: int
    ) -> None:
        self._regions = regions
        self._lookup = lookup
        self._urls = urls
        self._expires_in = expires_in

    def routes(self) -> Sequence[BaseRoute]:
        # Everything after /sha512/, slashes and newlines included, so any
        # malformed digest is a 400 rather than an unknown route.
        return [Route("/sha512/{digest:anything}", self.download, methods=["GET", "HEAD"])]

    async def download(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        _, found = await self._lookup.find(request, digest)
        store = self._regions.choose(found.instances, request.query_params.get("region"))
        if store is None:
            raise NotFound()
        url = self._urls.absolute(
            store.presign_get(blob_key(digest), expires_in=self._expires_in), request
        )
        return redirect(url)


def redirect(url: str) -> Response:
    """A 302 to a signed URL; never cached, since the URL expires."""
    escaped = html.escape(url, quote=True)
    return Response(
        _REDIRECT_PAGE.format(url=escaped),
        status_code=302,
        media_type="text/html",
        headers={"Location": url, "Cache-Control": "no-store"},
    )
