"""Operator imports: put local files into every region and index them."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from indexer.audit import AuditLog
from indexer.catalog import Catalog
from indexer.digests import ALGORITHM, Hashed, hash_stream
from indexer.index import read_index, update_index
from indexer.intake import Batch, BatchFile
from indexer.replication import hash_copy
from indexer.schema import (
    IndexObject,
    Upload,
    Visibility,
    blob_key,
    summary,
    utc_timestamp,
    with_uploads,
)
from indexer.stores import ObjectNotFound, PreconditionFailed, Regions, Store

logger = logging.getLogger(__name__)


class ImportRefused(Exception):
    """Base class for files an import refuses."""


class VisibilityConflict(ImportRefused):
    """The bytes are already stored with another visibility."""

    def __init__(self, path: Path, digest: str, stored: str, requested: str) -> None:
        super().__init__(
            f"{path} ({digest}) is already stored as {stored}; refusing to import it as {requested}"
        )


class FileChanged(ImportRefused):
    """The file changed while it was being imported."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed while it was being imported; nothing was indexed")


@dataclass(frozen=True, slots=True)
class Imported:
    """One imported file."""

    digest: str
    size: int
    filename: str


def import_file(
    regions: Regions,
    path: Path,
    *,
    visibility: Visibility,
    message: str,
    author: str,
    batch_id: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Imported:
    """Store `path` in every region, then write its index object (the arrival recorded
    under `batch_id`, the import's batch, when given).

    Idempotent: bytes already stored and indexed with the same visibility
    change nothing. The blobs are durable before the index names them.
    """
    with path.open("rb") as stream:
        hashed = hash_stream(stream)
    found = read_index(regions.index, hashed.digest)
    existing = found[0] if found is not None else None
    if existing is not None and existing.visibility != visibility:
        raise VisibilityConflict(path, hashed.digest, existing.visibility, visibility)
    recorded = existing.etags if existing is not None else {}
    etags = {
        store.region: _ensure_blob(
            store, path, hashed.digest, hashed.size, etag=recorded.get(store.region)
        )
        for store in regions
    }

    now = utc_timestamp(clock())

    upload = Upload(batch_id, path.name, author[:1024], summary(message), now)

    def change(current: IndexObject | None) -> IndexObject:
        if current is None:
            return IndexObject(
                digest=hashed.digest,
                size=hashed.size,
                visibility=visibility,
                instances=regions.names,
                uploads=(upload,),
                verified_at=now,
                updated_at=now,
                etags=etags,
            )
        if current.visibility != visibility:
            raise VisibilityConflict(path, hashed.digest, current.visibility, visibility)
        stored = current
        for region, etag in etags.items():
            stored = stored.with_copy(region, etag)
        uploads = current.uploads if batch_id is None else with_uploads(current.uploads, [upload])
        if uploads == current.uploads and current.deleted is None:
            return stored  # at most copies changed (made, or their ETags recorded): no arrival
        return stored.with_changes(
            uploads=uploads,
            deleted=None,
            verified_at=current.verified_at if current.deleted is None else now,
            updated_at=now,
        )

    def record(current: IndexObject | None, updated: IndexObject) -> None:
        # The record first, of the very write about to land, when it is an arrival (copies
        # alone are none: a rebuild finds them in the regions).
        if current is None or (updated.uploads, updated.deleted) != (
            current.uploads,
            current.deleted,
        ):
            AuditLog(regions.index, clock=clock).append(
                "import",
                who=author,
                why=summary(message),
                digest=hashed.digest,
                batch_id=batch_id,
                details={"filename": path.name, "size": hashed.size, "visibility": visibility},
                at=now,
            )

    update_index(regions.index, hashed.digest, change, before_write=record)
    return Imported(hashed.digest, hashed.size, path.name)


def _ensure_blob(store: Store, path: Path, digest: str, size: int, *, etag: str | None) -> str:
    """Store the file in `store` unless its copy is there (the version `etag` the index
    records, or bytes that hash to the file); the ETag of the copy."""
    key = blob_key(digest)
    held = _copy_of_file(store, key, Hashed(digest, size), etag=etag)
    if held is not None:
        return held
    with path.open("rb") as stream:
        reader = _HashingReader(stream)
        store.put_stream(key, reader)  # type: ignore[arg-type]
    if reader.hexdigest() != digest or reader.size != size:
        store.delete(key)
        raise FileChanged(path)
    logger.info("stored blob", extra={"digest": digest, "region": store.region, "size": size})
    return store.head(key).etag


def _copy_of_file(store: Store, key: str, expected: Hashed, *, etag: str | None) -> str | None:
    """The ETag of the file's copy at `key`: the verified copy the index records (`etag`),
    or bytes never verified (put by hand, or left by a killed import) that hash to the
    file; None when there is none."""
    try:
        info = store.head(key)
        if info.size != expected.size:
            return None
        if info.etag == etag or hash_copy(store, key, etag=info.etag) == expected:
            return info.etag
    except (ObjectNotFound, PreconditionFailed):
        pass
    return None


class _HashingReader:
    """Hashes what is read through it, so the bytes stored are the bytes hashed."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hasher = hashlib.sha512()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hasher.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def record_import(
    regions: Regions,
    batch_id: int,
    imported: list[Imported],
    *,
    visibility: Visibility,
    message: str,
    author: str,
    clock: Callable[[], float] = time.time,
) -> Batch:
    """Record an import as a batch, like an upload's (searchable by author and message),
    and bring the catalog's entries of its batch and files up to date."""
    batch = Batch(
        id=batch_id,
        author=author,
        uploaded=utc_timestamp(clock()),
        message=message,
        region=regions.index.region,
        files={
            item.filename: BatchFile(
                size=item.size, digest=item.digest, algorithm=ALGORITHM, visibility=visibility
            )
            for item in imported
        },
    )
    regions.index.put(
        batch.key, batch.to_json(), if_none_match=True, content_type="application/json"
    )
    AuditLog(regions.index, clock=clock).append(
        "batch",
        who=author,
        why=summary(message),
        batch_id=batch_id,
        details={"files": len(batch.files), "region": batch.region, "import": True},
        at=batch.uploaded,
    )
    Catalog(regions.index).update([item.digest for item in imported], [batch_id])
    return batch
