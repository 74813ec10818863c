"""``PATCH /file/sha512/<digest>``: change a file's visibility, delete its instances.

The legacy API's shape: a JSON list of ops, ``{"op": "set_visibility",
"visibility": "public"|"internal"}`` and ``{"op": "delete_instances"}``, each
with an optional ``"reason"``; the answer is the file as ``GET
/file/sha512/<digest>`` shows it. Needs the ``…/manage`` scope. The change is
made by the indexer's code (:mod:`indexer.management`); this replica forgets
its cached answer at once, the others within their cache bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Authenticator, Permissions
from gateway.bodies import is_text, parse_json, read_body
from gateway.catalog_view import CatalogView, legacy_file
from gateway.errors import BadRequest, NotFound
from gateway.index_cache import IndexCache
from gateway.lookup import INVALID_DIGEST
from indexer.catalog import file_entry
from indexer.digests import is_valid_digest
from indexer.management import (
    MAX_REASON,
    DeleteInstances,
    Operation,
    SetVisibility,
    UnknownFile,
    apply,
)
from indexer.schema import VISIBILITIES
from indexer.stores import Regions

MAX_BODY = 64 * 1024
MAX_OPERATIONS = 10


class Management:
    """The management endpoint over the configured regions."""

    def __init__(
        self,
        *,
        regions: Regions,
        authenticator: Authenticator,
        permissions: Permissions,
        index: IndexCache,
        catalog: CatalogView,
    ) -> None:
        self._regions = regions
        self._authenticator = authenticator
        self._permissions = permissions
        self._index = index
        self._catalog = catalog

    def routes(self) -> Sequence[BaseRoute]:
        return [Route("/file/sha512/{digest:anything}", self.patch, methods=["PATCH"])]

    async def patch(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        if not is_valid_digest(digest):
            raise BadRequest(INVALID_DIGEST)
        caller = await self._authenticator.authenticate(request)
        self._permissions.require(
            caller, self._permissions.manage, detail="no permission to manage files"
        )
        operations = parse_operations(await read_body(request, MAX_BODY))
        assert caller.client_id is not None
        try:
            changed = await run_in_threadpool(
                apply, self._regions, digest, operations, by=caller.client_id
            )
        except UnknownFile:
            raise NotFound() from None
        finally:
            self._index.invalidate(digest)
            self._catalog.invalidate()
        return JSONResponse(legacy_file(file_entry(changed)), headers={"Cache-Control": "no-store"})


def parse_operations(body: bytes) -> list[Operation]:
    """The op list of a PATCH body; 400 naming what is wrong."""
    data: Any = parse_json(body)
    if not isinstance(data, list) or not data:
        raise BadRequest("The body must be a non-empty list of operations")
    if len(data) > MAX_OPERATIONS:
        raise BadRequest(f"At most {MAX_OPERATIONS} operations in one request")
    return [_operation(item) for item in data]


def _operation(item: Any) -> Operation:
    if not isinstance(item, dict):
        raise BadRequest("Each operation must be an object with an op")
    op = item.get("op")
    reason = item.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not is_text(reason):
        raise BadRequest(f"reason must be text of at most {MAX_REASON} characters")
    if op == "set_visibility":
        _only(item, {"op", "visibility", "reason"})
        visibility = item.get("visibility")
        if visibility not in VISIBILITIES:
            raise BadRequest("visibility must be public or internal")
        return SetVisibility(visibility, reason)
    if op == "delete_instances":
        _only(item, {"op", "reason"})
        return DeleteInstances(reason)
    if op is None:
        raise BadRequest("An operation lacks its op")
    raise BadRequest("Unknown op: expected set_visibility or delete_instances")


def _only(item: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0][:50]!r} in {item['op']}")
