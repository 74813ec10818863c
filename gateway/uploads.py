"""Upload batches: ``POST /upload``, ``GET /upload[/<id>]``, ``GET /upload/complete/sha512/<d>``.

The legacy contract (shapes and messages in DESIGN.md), with all state in the
store: a batch record (the message, once) and one small pending record per
file. Files the store lacks get a signed PUT URL to an unguessable staging
key; the indexer verifies the bytes there before anything can be downloaded.

What one request may cost is bounded: the body's size and file count, what
it writes (a small multiple of its size), and the work each caller may have
pending (``max_pending_files`` and ``max_pending_bytes``, answered 429).
Conflicts are judged against verified files only: a claim nobody has
uploaded yet never blocks anyone (the first verified upload wins).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Authenticator, Caller, Permissions
from gateway.bodies import query_text, read_body
from gateway.catalog_view import CatalogView
from gateway.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from gateway.index_cache import IndexCache
from gateway.lookup import INVALID_DIGEST
from gateway.upload_parsing import MAX_BODY, UploadRequest, check_against, parse_upload
from gateway.urls import PublicUrls
from indexer.audit import AuditLog
from indexer.catalog import batch_entry
from indexer.digests import is_valid_digest
from indexer.index import is_stored, read_index
from indexer.intake import (
    Batch,
    MalformedRecord,
    Pending,
    PendingLoad,
    new_staging_key,
    next_batch_id,
    pending_load,
    read_batch,
)
from indexer.schema import VISIBILITIES, summary, utc_timestamp
from indexer.stores import (
    OCTET_STREAM,
    PreconditionFailed,
    Regions,
    Store,
    StoreError,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

MAX_ID_ATTEMPTS = 5
MAX_CONCURRENT_POSTS = 8  # POST /upload bodies parsed and recorded at once, per process
RETRY_AFTER_QUOTA = 60


@dataclass(frozen=True, slots=True)
class Quota:
    """What one caller may have pending: files, and bytes not yet uploaded."""

    max_files: int
    max_bytes: int


class Uploads:
    """The upload endpoints over the configured regions."""

    def __init__(
        self,
        *,
        regions: Regions,
        authenticator: Authenticator,
        permissions: Permissions,
        urls: PublicUrls,
        catalog: CatalogView,
        index: IndexCache,
        expires_in: int,
        quota: Quota,
        on_complete: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._regions = regions
        self._authenticator = authenticator
        self._permissions = permissions
        self._urls = urls
        self._catalog = catalog
        self._index = index
        self._expires_in = expires_in
        self._quota = quota
        self._on_complete = on_complete
        self._clock = clock
        # One batch at a time per caller in this process, so a caller's quota
        # check and writes are not raced by that caller's own parallel posts.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._posting = anyio.Semaphore(MAX_CONCURRENT_POSTS)

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/upload", self.post, methods=["POST"]),
            Route("/upload", self.search, methods=["GET"]),
            Route("/upload/complete/sha512/{digest:anything}", self.complete, methods=["GET"]),
            Route("/upload/{batch_id}", self.show, methods=["GET"]),
        ]

    async def post(self, request: Request) -> Response:
        # The caller and the whole body before a slot: a body sent slowly, or never ended
        # (by any authenticated client, upload scope or not), holds its own connection and
        # at most MAX_BODY bytes, never one of the posts parsed and recorded at once.
        caller = await self._authenticator.authenticate(request)
        if caller.is_anonymous:
            self._require_upload(caller)  # a 401 before reading any body
        body = await read_body(request, MAX_BODY)
        async with self._posting:
            return await self._post(request, caller, body)

    async def _post(self, request: Request, caller: Caller, body: bytes) -> Response:
        upload = parse_upload(body)
        for visibility in upload.visibilities:
            self._permissions.require(
                caller,
                self._permissions.upload(visibility),
                detail=f"no permission to upload {visibility} files",
            )
        store = self._upload_store(query_text(request, "region"))
        self._urls.base(request.scope)  # a Host naming no host is a 400 before any write
        assert caller.client_id is not None
        async with self._serialized(caller.client_id):
            batch, put_urls = await run_in_threadpool(
                self._create_batch, upload, caller.client_id, store
            )
        # What needs no upload is stored: the batch's files say so (has_instances).
        result = batch_entry(batch, lambda digest: digest not in put_urls)
        for name, entry in result["files"].items():
            url = put_urls.get(entry["digest"])
            if url is not None:
                result["files"][name]["put_url"] = self._urls.absolute(url, request)
        return JSONResponse({"result": result}, headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def _serialized(self, client_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(client_id)
        if lock is None:
            lock = self._locks[client_id] = asyncio.Lock()
        async with lock:
            yield

    def _create_batch(
        self, upload: UploadRequest, author: str, store: Store
    ) -> tuple[Batch, dict[str, str]]:
        """Check, then write: the batch record, then one pending record per digest.

        Returns the batch and the signed PUT URL of every digest to upload. The URLs
        are signed before the records are written, which say when they expire: the
        indexer copies a staged upload once, not twice, when no PUT can land any more.
        """
        names = upload.names_by_digest()
        sizes = {digest: upload.files[found[0]].size for digest, found in names.items()}
        # What can be refused from the caller's own pending records alone is, before any
        # file of the batch is looked up; then exactly, once the stored ones are known.
        load = pending_load(self._regions.index, author)
        self._check_quota(load, files=len(names), size=0)
        stored = self._stored_digests(upload, names)
        staged = {digest: size for digest, size in sizes.items() if digest not in stored}
        self._check_quota(load, files=len(names), size=sum(staged.values()))
        now = self._clock()
        batch = self._new_batch(upload, author, store.region, now)
        staging = {digest: new_staging_key(digest) for digest in staged}
        put_urls = {
            digest: store.presign_put(
                key,
                expires_in=self._expires_in,
                content_type=OCTET_STREAM,
                content_length=sizes[digest],
            )
            for digest, key in staging.items()
        }
        # Read after signing: a URL expires at its signing time (whole seconds, rounded
        # down) plus expires_in, never after this.
        put_url_expires = self._clock() + self._expires_in
        pendings = [
            Pending(
                digest=digest,
                size=upload.files[filenames[0]].size,
                visibility=upload.files[filenames[0]].visibility,
                batch_id=batch.id,
                filenames=filenames,
                author=author,
                region=store.region,
                staging_key=staging.get(digest),
                created=now,
                put_url_expires=put_url_expires if digest in staging else None,
            )
            for digest, filenames in names.items()
        ]
        self._record_pending(
            pendings,
            lambda: AuditLog(self._regions.index, clock=self._clock).append(
                "batch",
                who=author,
                why=summary(upload.message),
                batch_id=batch.id,
                details={"files": len(upload.files), "region": store.region},
            ),
        )
        try:
            self._catalog.write([], [batch.id])  # searchable once this answers
        except StoreError as exc:  # the batch stands; the next consistency check lists it
            logger.error("batch %d left out of the catalog for now: %s", batch.id, exc)
        return batch, put_urls

    def _record_pending(self, pendings: list[Pending], audit: Callable[[], object]) -> None:
        """Write the pending records, then the batch's audit record. When a write fails, the
        pending records written are deleted again (best effort) before the error goes on:
        the caller, answered 503, got no URL to upload their bytes with, and they would hold
        its quota for a day. The batch record stays, as a batch whose bytes never came."""
        index = self._regions.index
        written: list[str] = []
        try:
            for pending in pendings:
                index.put(pending.key, pending.to_json(), content_type="application/json")
                written.append(pending.key)
            audit()
        except StoreError:
            for key in written:
                try:
                    index.delete(key)
                except StoreError as exc:
                    logger.warning("pending record %s left to expire: %s", key, exc)
            raise

    def _stored_digests(self, upload: UploadRequest, names: dict[str, tuple[str, ...]]) -> set[str]:
        """The batch's digests the store holds; 400 for any that conflicts with a verified
        file (another size or visibility). Unverified claims are not judged here. One
        index read a digest, however many names the batch gives it."""
        stored = set()
        for digest, found_names in sorted(names.items()):
            found = read_index(self._regions.index, digest)
            if found is None:
                continue
            name = found_names[0]
            # Deleted files keep their visibility too: no byte changes sides.
            check_against(name, upload.files[name], found[0].size, found[0].visibility)
            if is_stored(self._regions, found[0]):
                stored.add(digest)
        return stored

    def _check_quota(self, load: PendingLoad, *, files: int, size: int) -> None:
        quota = self._quota
        if load.files + files > quota.max_files:
            reason = f"{load.files} files pending and {files} more in this batch"
            limit = f"at most {quota.max_files} files"
        elif load.bytes + size > quota.max_bytes:
            reason = f"{load.bytes} bytes pending and {size} more in this batch"
            limit = f"at most {quota.max_bytes} bytes"
        else:
            return
        raise TooManyRequests(
            f"Too much pending: {reason}; an uploader may have {limit} waiting for upload"
            " and verification. Upload (or let expire) what is pending first.",
            headers={"Retry-After": str(RETRY_AFTER_QUOTA)},
        )

    def _new_batch(self, upload: UploadRequest, author: str, region: str, now: float) -> Batch:
        """A batch record under a fresh id, created only where none exists."""
        index = self._regions.index
        for _ in range(MAX_ID_ATTEMPTS):
            batch = Batch(
                id=next_batch_id(index),
                author=author,
                uploaded=utc_timestamp(now),
                message=upload.message,
                region=region,
                files=upload.files,
            )
            try:
                index.put(
                    batch.key, batch.to_json(), if_none_match=True, content_type="application/json"
                )
            except PreconditionFailed:
                continue  # the id was taken (a counter restored from a backup, say)
            return batch
        raise StoreUnavailable(index.region, "no free batch id")

    def _upload_store(self, region: str | None) -> Store:
        if region is not None and region in self._regions:
            return self._regions[region]
        return self._regions.index

    async def complete(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        if not is_valid_digest(digest):
            raise BadRequest(INVALID_DIGEST)
        caller = await self._authenticator.authenticate(request)
        self._require_upload(caller)
        # The file becomes downloadable when the indexer has verified it; ask it to look now,
        # and forget a cached "no such file" for it.
        self._on_complete()
        self._index.invalidate_absent(digest)
        return JSONResponse({"digest": digest, "status": "accepted"}, status_code=202)

    async def show(self, request: Request) -> Response:
        raw_id = request.path_params["batch_id"]
        caller = await self._authenticator.authenticate(request)
        if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18):
            raise NotFound()
        try:
            batch = await run_in_threadpool(read_batch, self._regions.index, int(raw_id))
        except MalformedRecord as exc:
            logger.error("skipping %s", exc)
            batch = None
        if batch is None:
            raise NotFound()
        # Each file as the index knows it now, from this replica's catalog (no read per
        # file): a file made internal since keeps the batch from those who may not see it.
        shown = await self._catalog.as_shown(batch_entry(batch))
        visibilities = {entry["visibility"] for entry in shown["files"].values()}
        if not self._permissions.may_download(caller, visibilities):
            raise Forbidden()
        # The bare batch object, as the legacy get_batch answers it (row.to_dict()).
        return JSONResponse(shown)

    async def search(self, request: Request) -> Response:
        query = (query_text(request, "q") or "").strip().lower()
        if not query:
            raise BadRequest("q is required: a substring of an author or a message")
        caller = await self._authenticator.authenticate(request)
        results = await self._catalog.batches(
            query,
            allowed=lambda visibilities: self._permissions.may_download(caller, visibilities),
        )
        return JSONResponse({"result": results})

    def _require_upload(self, caller: Caller) -> None:
        """Some upload scope: 401 without credentials, 403 with others."""
        self._permissions.require(
            caller, *(self._permissions.upload(visibility) for visibility in VISIBILITIES)
        )
