"""``GET /file/sha512/<digest>`` and ``GET /file?q=``: what is stored, for those who may see it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Authenticator, Permissions
from gateway.bodies import query_text
from gateway.catalog_view import CatalogView, legacy_file
from gateway.errors import BadRequest
from gateway.lookup import FileLookup
from indexer.catalog import file_entry

_HEX = re.compile(r"[0-9a-f]+")
MIN_PREFIX = 8


class Files:
    """File metadata from the index (one file) and the catalog (searches)."""

    def __init__(
        self,
        *,
        lookup: FileLookup,
        catalog: CatalogView,
        authenticator: Authenticator,
        permissions: Permissions,
    ) -> None:
        self._lookup = lookup
        self._catalog = catalog
        self._authenticator = authenticator
        self._permissions = permissions

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/file/sha512/{digest:anything}", self.show, methods=["GET"]),
            Route("/file", self.search, methods=["GET"]),
        ]

    async def show(self, request: Request) -> Response:
        _, found = await self._lookup.find(request, request.path_params["digest"])
        return JSONResponse(legacy_file(file_entry(found)))

    async def search(self, request: Request) -> Response:
        query = (query_text(request, "q") or "").strip().lower()
        if not query:
            raise BadRequest("q is required: a hash prefix of at least 8 characters or a filename")
        caller = await self._authenticator.authenticate(request)
        is_prefix = len(query) >= MIN_PREFIX and _HEX.fullmatch(query) is not None
        answers = await self._catalog.files(
            query,
            is_prefix=is_prefix,
            allowed=lambda visibilities: self._permissions.may_download(caller, visibilities),
        )
        # The catalog keeps each answer serialised: a search joins them.
        body = b'{"result":[' + b",".join(answers) + b"]}"
        return Response(body, media_type="application/json")
