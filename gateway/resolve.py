"""``POST /resolve``: a whole manifest's downloads in one request.

The body is the manifest itself, as the ``tooltool`` client reads it: a JSON list
of objects, each with a ``digest`` and an optional ``algorithm``; every other key
(``filename``, ``size``, ``unpack``, ``visibility``, …) is ignored. The answer
holds, for each entry in order, the signed URL that ``GET /sha512/<digest>``
would redirect the same caller to, or the problem body it would answer (400,
403, 404). The caller is authenticated once; then each file takes the download
route's own decision (:meth:`gateway.download.Downloads.find_for`, then
:meth:`~gateway.download.Downloads.redirect_for`), so the URLs are the ones the
download route hands out, reused within their window and counted alike. Every
file is looked up before any URL is signed: a slow lookup never ages the URLs of
the files before it, and each URL is as fresh when the answer goes out as GET's.

What one request costs is bounded: a body of at most 1 MiB holding at most
:data:`MAX_ENTRIES` entries; each distinct digest looked up once,
:data:`MAX_LOOKUPS` at a time; :data:`MAX_CONCURRENT_RESOLVES` requests parsed and
looked up at once per process (the others wait, each holding its body). A request
takes its slot only once its caller is known and its whole body is read: a body
trickling in (a slowloris) holds a connection and at most 1 MiB, as a Hawk-signed
body on any route does, and never a slot.

The body is checked by hand rather than with jsonschema: a wrong ``algorithm``
is that entry's answer, not the request's, and the request's own 400s name the
entry at fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth import Authenticator, Caller
from gateway.bodies import parse_json, read_body
from gateway.download import Downloads
from gateway.errors import BadRequest, PayloadTooLarge, Problem, problem_body, refuse_malformed
from gateway.logs import record_counts
from indexer.digests import ALGORITHM
from indexer.schema import IndexObject, MalformedIndexObject

PATH = "/resolve"
MAX_ENTRIES = 1000  # entries of one manifest (a 413 past it)
MAX_LOOKUPS = 16  # index lookups of one request at once
MAX_CONCURRENT_RESOLVES = 8  # requests handled at once, per process
WRONG_ALGORITHM = "`sha512` is the only allowed digest algorithm"  # the legacy message

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What a manifest entry asks: a digest, of the one algorithm there is or another."""

    digest: str
    is_sha512: bool


def parse_manifest(body: bytes) -> list[ManifestEntry]:
    """The entries of a ``POST /resolve`` body; 400 for a body that is no manifest, 413
    for one of more than :data:`MAX_ENTRIES` entries."""
    data: Any = parse_json(body)
    if not isinstance(data, list):
        raise BadRequest("The request body must be a JSON list of manifest entries")
    if len(data) > MAX_ENTRIES:
        raise PayloadTooLarge(
            f"A manifest may hold at most {MAX_ENTRIES} entries; this one holds {len(data)}"
        )
    return [_entry(position, item) for position, item in enumerate(data)]


def _entry(position: int, item: Any) -> ManifestEntry:
    if not isinstance(item, dict):
        raise BadRequest(f"Entry {position} of the manifest must be an object with a digest")
    digest = item.get("digest")
    if not isinstance(digest, str):
        raise BadRequest(f"Entry {position} of the manifest must have a digest, a string")
    return ManifestEntry(digest, item.get("algorithm", ALGORITHM) == ALGORITHM)


class ManifestResolver:
    """The batch-resolve endpoint, over the download route's per-file decision."""

    def __init__(self, *, downloads: Downloads, authenticator: Authenticator) -> None:
        self._downloads = downloads
        self._authenticator = authenticator
        self._resolving = anyio.Semaphore(MAX_CONCURRENT_RESOLVES)

    def routes(self) -> Sequence[BaseRoute]:
        return [Route(PATH, self.resolve, methods=["POST"])]

    async def resolve(self, request: Request) -> Response:
        # The caller and the body before a slot: a body sent slowly, or never ended, holds
        # its own connection only, never one of the few requests handled at once.
        caller = await self._authenticator.authenticate(request)  # the request's 401
        body = await read_body(request)
        async with self._resolving:
            entries = parse_manifest(body)
            digests = [entry.digest for entry in entries if entry.is_sha512]
            answers = await self._answers(caller, digests, request)
        refused = {"problem": problem_body(400, WRONG_ALGORITHM)}
        files = [
            answers[entry.digest] if entry.is_sha512 else {"digest": entry.digest, **refused}
            for entry in entries
        ]
        resolved = sum(1 for answer in files if "url" in answer)
        record_counts(
            request.scope, files=len(files), resolved=resolved, refused=len(files) - resolved
        )
        return JSONResponse({"files": files}, headers={"Cache-Control": "no-store"})

    async def _answers(
        self, caller: Caller, digests: list[str], request: Request
    ) -> dict[str, Json]:
        """The answer for each distinct digest: every file looked up, then every URL signed."""
        region = request.query_params.get("region")
        found = await self._found(caller, list(dict.fromkeys(digests)))
        return {
            digest: self._answer(digest, file, region, request) for digest, file in found.items()
        }

    async def _found(self, caller: Caller, distinct: list[str]) -> dict[str, IndexObject | Json]:
        """Each digest's file, or the problem body GET answers for it; :data:`MAX_LOOKUPS`
        workers take them in turn. An error that is no file's answer (an unavailable store)
        is the request's."""
        waiting = iter(distinct)
        found: dict[str, IndexObject | Json] = {}
        failures: list[Exception] = []

        async def work() -> None:
            for digest in waiting:
                try:
                    found[digest] = await self._find(caller, digest)
                except Exception as exc:
                    failures.append(exc)
                if failures:
                    return

        await asyncio.gather(*(work() for _ in range(min(MAX_LOOKUPS, len(distinct)))))
        if failures:
            raise failures[0]
        return found

    async def _find(self, caller: Caller, digest: str) -> IndexObject | Json:
        try:
            return await self._downloads.find_for(caller, digest)
        except Problem as problem:
            return problem.body()
        except MalformedIndexObject as exc:  # as the download route answers it, this file's
            return refuse_malformed(exc)

    def _answer(
        self, digest: str, found: IndexObject | Json, region: str | None, request: Request
    ) -> Json:
        """What ``GET /sha512/<digest>`` answers the caller: its URL, or its problem body."""
        if not isinstance(found, IndexObject):
            return {"digest": digest, "problem": found}
        try:
            redirect = self._downloads.redirect_for(found, digest, region, request)
        except Problem as problem:
            return {"digest": digest, "problem": problem.body()}
        return {"digest": digest, "url": redirect.url}
