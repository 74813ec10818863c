"""``GET /file/sha512/<digest>`` and ``GET /file?q=``: what is stored, for those who may see it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Authenticator, Permissions
from gateway.bodies import query_text
from gateway.catalog_view import MAX_RESULTS, CatalogView
from gateway.errors import BadRequest
from gateway.lookup import FileLookup
from indexer.catalog import file_entry

_HEX = re.compile(r"[0-9a-f]+")
MIN_PREFIX = 8
_FILE_FIELDS = ("algorithm", "digest", "size", "visibility", "has_instances", "instances")


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
        await self._catalog.refresh()
        found = (
            self._catalog.files_with_prefix(query)
            if is_prefix
            else self._catalog.files_named(query)
        )
        results = []
        for entry in found:
            if self._permissions.may_download(caller, [entry["visibility"]]):
                results.append(legacy_file(entry))
                if len(results) >= MAX_RESULTS:
                    break
        return JSONResponse({"result": results})


def legacy_file(entry: dict[str, Any]) -> dict[str, Any]:
    """A file as the legacy API shows it (catalog entries hold more)."""
    return {name: entry[name] for name in _FILE_FIELDS}
