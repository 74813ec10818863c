"""``GET``/``HEAD /sha512/<digest>``: redirect to a short-lived signed URL of the blob, or refuse.

The order of checks keeps internal files private and the store unbothered:
the digest's form first (no store access for garbage), then the index object
(cached), then the caller's scope (:mod:`gateway.lookup`), then a region
holding a copy. The cached hits take a shorter way, with the same checks and
the same answers (:mod:`gateway.fast_path`); this route answers the rest.
``POST /resolve`` (:mod:`gateway.resolve`) takes the same decision for each file
of a manifest, through :meth:`Downloads.find_for` and :meth:`Downloads.redirect_for`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Caller
from gateway.download_urls import DownloadUrls, Redirect
from gateway.errors import NotFound
from gateway.lookup import FileLookup
from gateway.urls import PublicUrls
from indexer.schema import IndexObject, blob_key
from indexer.stores import Regions


class Downloads:
    """The download endpoint over the configured regions and their index."""

    def __init__(
        self,
        *,
        regions: Regions,
        lookup: FileLookup,
        urls: PublicUrls,
        download_urls: DownloadUrls,
    ) -> None:
        self._regions = regions
        self._lookup = lookup
        self._urls = urls
        self._download_urls = download_urls

    def routes(self) -> Sequence[BaseRoute]:
        # Everything after /sha512/, slashes and newlines included, so any
        # malformed digest is a 400 rather than an unknown route.
        return [Route("/sha512/{digest:anything}", self.download, methods=["GET", "HEAD"])]

    async def download(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        _, found = await self._lookup.find(request, digest)
        return redirect(
            self.redirect_for(found, digest, request.query_params.get("region"), request)
        )

    async def find_for(self, caller: Caller, digest: str) -> IndexObject:
        """The file :meth:`download` redirects `caller` to a copy of, for a caller
        authenticated once for many files: the same checks, the same problems raised."""
        return await self._lookup.find_for(caller, digest)

    def redirect_for(
        self, found: IndexObject, digest: str, region: str | None, request: Request
    ) -> Redirect:
        """What :meth:`download` answers for `found` (``?region=`` `region`): the redirect to
        a URL signed (or reused) now, to a copy in the preferred region, else the first
        holding one; 404 when no configured region does."""
        store = self._regions.choose(found.instances, region)
        if store is None:
            raise NotFound()
        return self._download_urls.redirect(
            store, blob_key(digest), lambda: self._urls.base(request.scope)
        )


def redirect(answer: Redirect) -> Response:
    """A 302 to a signed URL, with the headers the fast path sends too."""
    response = Response(answer.body, status_code=302)
    response.raw_headers = list(answer.raw_headers)
    return response
