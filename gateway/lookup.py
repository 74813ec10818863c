"""Finding a file by digest for a caller: the checks downloads and file reads share."""

from __future__ import annotations

from starlette.requests import Request

from gateway.auth import Authenticator, Caller, Permissions
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.index_cache import IndexCache
from indexer.digests import is_valid_digest
from indexer.schema import IndexObject

INVALID_DIGEST = "Invalid sha512 digest"


class FileLookup:
    """The digest's form first (no store access for garbage), then the index object
    (cached), then the caller's scope for its visibility."""

    def __init__(
        self, *, index: IndexCache, authenticator: Authenticator, permissions: Permissions
    ) -> None:
        self._index = index
        self._authenticator = authenticator
        self._permissions = permissions

    async def find(self, request: Request, digest: str) -> tuple[Caller, IndexObject]:
        """The caller and the file; 400 not a digest (before any credentials are
        verified), 404 unknown, 403 not the caller's to see."""
        _check_digest(digest)
        caller = await self._authenticator.authenticate(request)
        return caller, await self._visible(caller, digest)

    async def find_for(self, caller: Caller, digest: str) -> IndexObject:
        """The file, for a caller authenticated already (once for many files): the same
        checks and answers as :meth:`find`."""
        _check_digest(digest)
        return await self._visible(caller, digest)

    async def _visible(self, caller: Caller, digest: str) -> IndexObject:
        found = await self._index.get(digest)
        if found is None:
            raise NotFound()
        if not caller.has_scope(self._permissions.download(found.visibility)):
            raise Forbidden()
        return found


def _check_digest(digest: str) -> None:
    if not is_valid_digest(digest):
        raise BadRequest(INVALID_DIGEST)
