"""Upload batches: ``POST /upload``, ``GET /upload[/<id>]``, ``GET /upload/complete/sha512/<d>``.

The legacy contract (shapes and messages in DESIGN.md), with all state in the
store: a batch record and one pending record per file. Files the store lacks
get a signed PUT URL to an unguessable staging key; the indexer verifies the
bytes there before anything can be downloaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.routing  # noqa: F401 - registers the `anything` convertor
from gateway.auth import Authenticator, Caller, Permissions
from gateway.bodies import read_body
from gateway.catalog_cache import CatalogCache
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.index_cache import IndexCache
from gateway.lookup import INVALID_DIGEST
from gateway.urls import PublicUrls
from indexer.catalog import batch_entry
from indexer.digests import ALGORITHM, is_valid_digest
from indexer.index import is_stored, read_index
from indexer.intake import (
    Batch,
    BatchFile,
    MalformedRecord,
    Pending,
    new_staging_key,
    next_batch_id,
    pending_prefix,
    read_batch,
)
from indexer.schema import VISIBILITIES, utc_timestamp
from indexer.stores import (
    OCTET_STREAM,
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    Store,
    StoreUnavailable,
)

MAX_BODY = 1024 * 1024
MAX_FILES = 1000
MAX_SIZE = 5 * 1024**3  # the most one signed PUT can carry on S3
MAX_MESSAGE = 65536
MAX_FILENAME = 255
MAX_ID_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A validated ``POST /upload`` body."""

    message: str
    files: dict[str, BatchFile]

    @property
    def visibilities(self) -> list[str]:
        return sorted({entry.visibility for entry in self.files.values()})


def parse_upload(body: bytes) -> UploadRequest:
    """Validate a ``POST /upload`` body, with the legacy service's messages."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("The request body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object")
    if "author" in data:
        raise BadRequest("Author must NOT be specified for upload.")
    unknown = sorted(set(data) - {"message", "files"})
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0][:50]!r}")
    message = data.get("message")
    if not isinstance(message, str) or not message.strip():
        raise BadRequest("message must be non-empty")
    if len(message) > MAX_MESSAGE:
        raise BadRequest(f"message must be at most {MAX_MESSAGE} characters")
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise BadRequest("a batch must include at least one file")
    if len(files) > MAX_FILES:
        raise BadRequest(f"a batch may include at most {MAX_FILES} files")
    parsed = {name: _parse_file(name, entry) for name, entry in files.items()}
    _check_consistent(parsed)
    return UploadRequest(message, parsed)


def _parse_file(name: str, entry: Any) -> BatchFile:
    shown = repr(name[:100])
    if (
        not name
        or len(name) > MAX_FILENAME
        or any(character in name for character in "/\\\x00")
        or name in (".", "..")
        or not name.isprintable()
    ):
        raise BadRequest(f"Invalid filename {shown}: no /, \\ or control characters")
    if not isinstance(entry, dict):
        raise BadRequest(f"Invalid entry for {shown}: must be an object")
    unknown = sorted(set(entry) - {"size", "digest", "algorithm", "visibility"})
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0][:50]!r} for {shown}")
    if entry.get("algorithm") != ALGORITHM:
        raise BadRequest("`sha512` is the only allowed digest algorithm")
    digest = entry.get("digest")
    if not isinstance(digest, str) or not is_valid_digest(digest):
        raise BadRequest(INVALID_DIGEST)
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"Invalid size for {shown}: must be a non-negative integer")
    if size > MAX_SIZE:
        raise BadRequest(f"{shown} is larger than 5 GiB, the most one upload can hold")
    visibility = entry.get("visibility")
    if visibility not in VISIBILITIES:
        raise BadRequest(f"Invalid visibility for {shown}: must be public or internal")
    return BatchFile(size=size, digest=digest, algorithm=ALGORITHM, visibility=visibility)


def _check_consistent(files: dict[str, BatchFile]) -> None:
    """One digest named twice in a batch must have one size and one visibility."""
    seen: dict[str, tuple[str, BatchFile]] = {}
    for name, entry in files.items():
        if entry.digest in seen:
            _, first = seen[entry.digest]
            _check_against(name, entry, first.size, first.visibility)
        else:
            seen[entry.digest] = (name, entry)


def _check_against(name: str, entry: BatchFile, size: int, visibility: str) -> None:
    if visibility != entry.visibility:
        raise BadRequest("Cannot change already existing file's visibility level.")
    if size != entry.size:
        raise BadRequest(f"Size mismatch for {name}")


class Uploads:
    """The upload endpoints over the configured regions."""

    def __init__(
        self,
        *,
        regions: Regions,
        authenticator: Authenticator,
        permissions: Permissions,
        urls: PublicUrls,
        catalog: CatalogCache,
        index: IndexCache,
        expires_in: int,
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
        self._on_complete = on_complete
        self._clock = clock

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/upload", self.post, methods=["POST"]),
            Route("/upload", self.search, methods=["GET"]),
            Route("/upload/complete/sha512/{digest:anything}", self.complete, methods=["GET"]),
            Route("/upload/{batch_id}", self.show, methods=["GET"]),
        ]

    async def post(self, request: Request) -> Response:
        caller = await self._authenticator.authenticate(request)
        if caller.is_anonymous:
            self._require_upload(caller)  # a 401 before reading any body
        upload = parse_upload(await read_body(request, MAX_BODY))
        for visibility in upload.visibilities:
            self._permissions.require(
                caller,
                self._permissions.upload(visibility),
                detail=f"no permission to upload {visibility} files",
            )
        store = self._upload_store(request.query_params.get("region"))
        assert caller.client_id is not None
        batch, staging = await run_in_threadpool(
            self._create_batch, upload, caller.client_id, store
        )
        result = batch_entry(batch)
        for name, key in staging.items():
            size = batch.files[name].size
            url = store.presign_put(
                key, expires_in=self._expires_in, content_type=OCTET_STREAM, content_length=size
            )
            result["files"][name]["put_url"] = self._urls.absolute(url, request)
        return JSONResponse({"result": result}, headers={"Cache-Control": "no-store"})

    def _create_batch(
        self, upload: UploadRequest, author: str, store: Store
    ) -> tuple[Batch, dict[str, str]]:
        index = self._regions.index
        stored = self._stored_digests(upload)
        now = self._clock()
        batch = self._new_batch(upload, author, store.region, now)
        staging: dict[str, str] = {}
        for name, entry in sorted(upload.files.items()):
            key = None if entry.digest in stored else new_staging_key(entry.digest)
            pending = Pending(
                digest=entry.digest,
                size=entry.size,
                visibility=entry.visibility,
                batch_id=batch.id,
                filename=name,
                author=author,
                message=upload.message,
                uploaded=batch.uploaded,
                region=store.region,
                staging_key=key,
                created=now,
            )
            index.put(pending.key, pending.to_json(), content_type="application/json")
            if key is not None:
                staging[name] = key
        return batch, staging

    def _stored_digests(self, upload: UploadRequest) -> set[str]:
        """The batch's digests the store holds; 400 for any that conflicts with what is
        stored or pending (another size or visibility)."""
        index = self._regions.index
        stored = set()
        for name, entry in upload.files.items():
            found = read_index(index, entry.digest)
            if found is not None:
                # Deleted files keep their visibility too: no byte changes sides.
                _check_against(name, entry, found[0].size, found[0].visibility)
                if is_stored(self._regions, found[0]):
                    stored.add(entry.digest)
            for other in _pending_for(index, entry.digest):
                _check_against(name, entry, other.size, other.visibility)
        return stored

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
        self._index.invalidate(digest)
        return JSONResponse({"digest": digest, "status": "accepted"}, status_code=202)

    async def show(self, request: Request) -> Response:
        raw_id = request.path_params["batch_id"]
        caller = await self._authenticator.authenticate(request)
        if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18):
            raise NotFound()
        batch = await run_in_threadpool(read_batch, self._regions.index, int(raw_id))
        if batch is None:
            raise NotFound()
        if not self._permissions.may_download(caller, batch.visibilities):
            raise Forbidden()
        return JSONResponse({"result": batch_entry(batch)})

    async def search(self, request: Request) -> Response:
        caller = await self._authenticator.authenticate(request)
        query = request.query_params.get("q", "").lower()
        results = [
            batch
            for batch in await self._catalog.batches()
            if (query in batch["author"].lower() or query in batch["message"].lower())
            and self._permissions.may_download(
                caller, {entry["visibility"] for entry in batch["files"].values()}
            )
        ]
        return JSONResponse({"result": results})

    def _require_upload(self, caller: Caller) -> None:
        """Some upload scope: 401 without credentials, 403 with others."""
        self._permissions.require(
            caller, *(self._permissions.upload(visibility) for visibility in VISIBILITIES)
        )


def _pending_for(store: Store, digest: str) -> list[Pending]:
    pending = []
    for info in store.list(pending_prefix(digest)):
        try:
            raw, _ = store.get(info.key)
            pending.append(Pending.from_json(raw, key=info.key))
        except (ObjectNotFound, MalformedRecord):
            continue  # a vanished or unreadable record conflicts with nothing
    return pending
