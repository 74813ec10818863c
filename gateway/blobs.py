"""``/__store__/<region>/<key>``: where the local store's signed URLs point.

The route exists only for local stores (S3 serves its own URLs). GET and HEAD
serve the object with Range support; PUT streams the body to a temporary file
and moves it into place whole. Every request needs a valid, unexpired
signature for its method, region and key (see :mod:`indexer.signing`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from stat import S_ISREG

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, MalformedRangeHeader, Response
from starlette.responses import RangeNotSatisfiable as StarletteRangeNotSatisfiable
from starlette.routing import BaseRoute, Route

from gateway.blob_reads import WholeFileResponse
from gateway.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Problem
from indexer.local_store import LocalStore, os_error
from indexer.schema import blob_key
from indexer.signing import STORE_ROUTE_PREFIX, SignatureError, SignedRequest
from indexer.stores import InvalidKey, PreconditionFailed

MAX_PUT_BYTES = 5 * 1024**3  # S3's single-PUT limit


class _BlobResponse(FileResponse):
    """Reads of 1 MiB, not Starlette's 64 KiB: each read is a hop to a worker thread, and
    at 64 KiB those hops were most of what serving a large blob cost the event loop
    (about 3x the CPU per byte, bench/client_fetch.py). One read is in memory per
    download in flight."""

    chunk_size = 1024 * 1024


class LengthRequired(Problem):
    """411: a PUT without Content-Length."""

    status = 411


class Conflict(Problem):
    """409: the object may not be replaced."""

    status = 409


class RangeNotSatisfiable(Problem):
    """416: the requested range lies outside the object."""

    status = 416


class Blobs:
    """Serves signed requests for the local stores, by region."""

    def __init__(self, stores: Mapping[str, LocalStore], *, max_put_bytes: int = MAX_PUT_BYTES):
        self._stores = dict(stores)
        self._max_put_bytes = max_put_bytes

    def routes(self) -> Sequence[BaseRoute]:
        if not self._stores:
            return []
        path = STORE_ROUTE_PREFIX + "/{region}/{key:path}"
        return [
            Route(path, self.read, methods=["GET", "HEAD"]),
            Route(path, self.write, methods=["PUT"]),
        ]

    def _authorize(self, request: Request) -> tuple[LocalStore, str, SignedRequest]:
        region = request.path_params["region"]
        key = request.path_params["key"]
        store = self._stores.get(region)
        if store is None:
            raise NotFound()
        try:
            signed = store.signer.verify(
                request.method, region, key, dict(request.query_params.items())
            )
            store.path(key)
        except (SignatureError, InvalidKey) as exc:
            # S3 answers 403 for bad and expired signatures alike.
            raise Forbidden(f"Request signature refused: {exc}") from None
        return store, key, signed

    async def read(self, request: Request) -> Response:
        store, key, _ = self._authorize(request)
        path = store.path(key)
        try:
            # A stat, not Store.head: no need to name the version (or read the file) to serve
            # it; and an open, since FileResponse opens it only after the status is sent.
            stat = await run_in_threadpool(_readable_stat, path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound() from None
        except OSError as exc:
            raise os_error(store.region, exc) from exc
        if not S_ISREG(stat.st_mode):
            raise NotFound()
        _check_range(request, stat.st_size)
        # A whole blob skips the worker thread where it can; a range is Starlette's.
        response = WholeFileResponse if "range" not in request.headers else _BlobResponse
        return response(
            path,
            stat_result=stat,
            media_type="application/octet-stream",
            headers={"Cache-Control": "private, no-store"},
        )

    async def write(self, request: Request) -> Response:
        store, key, signed = self._authorize(request)
        content_type = signed.content_type
        if content_type is not None and request.headers.get("content-type") != content_type:
            raise Forbidden("Request signature refused: the Content-Type is not the signed one")
        length = _content_length(request)
        if signed.content_length is not None and length != signed.content_length:
            raise Forbidden("Request signature refused: the Content-Length is not the signed one")
        if length > self._max_put_bytes:
            raise PayloadTooLarge()
        is_blob = key.startswith(blob_key(""))
        try:
            with store.temporary() as temporary:
                received = await _receive(request, temporary)
                if received != length:
                    raise BadRequest(f"Expected {length} bytes, received {received}")
                try:
                    # A verified blob is never replaced.
                    await run_in_threadpool(store.commit, temporary, key, if_none_match=is_blob)
                except PreconditionFailed:
                    raise Conflict(f"{key} already exists and may not be replaced") from None
        except OSError as exc:  # the temporary file is gone: nothing half-written stays
            raise os_error(store.region, exc) from exc
        info = await run_in_threadpool(store.head, key)
        return Response(status_code=200, headers={"ETag": info.etag})


def _readable_stat(path: os.PathLike[str]) -> os.stat_result:
    with open(path, "rb") as stream:
        return os.fstat(stream.fileno())


def _check_range(request: Request, size: int) -> None:
    """Refuse a bad Range header in problem JSON, before FileResponse answers it in plain text."""
    # Checked whatever If-Range says: FileResponse would answer a bad range in plain text.
    http_range = request.headers.get("range")
    if http_range is None:
        return
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        raise BadRequest(f"Invalid Range header: {exc.content}") from None
    except StarletteRangeNotSatisfiable:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"}) from None


def _content_length(request: Request) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        raise LengthRequired("A PUT needs a Content-Length")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise BadRequest("Invalid Content-Length")
    return int(raw)


async def _receive(request: Request, temporary: os.PathLike[str]) -> int:
    received = 0
    with open(temporary, "wb") as stream:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                await run_in_threadpool(stream.write, chunk)
        except ClientDisconnect:
            raise BadRequest("The client disconnected during the upload") from None
        await run_in_threadpool(os.fsync, stream.fileno())
    return received
