"""Reading and conditionally writing index objects in a store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from indexer.digests import is_valid_digest
from indexer.schema import INDEX_PREFIX, IndexObject, MalformedIndexObject, blob_key, index_key
from indexer.stores import (
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    Store,
    StoreUnavailable,
    put_over,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class ConcurrentUpdate(Exception):
    """An index object kept changing under every attempt to update it."""

    def __init__(self, digest: str, attempts: int) -> None:
        super().__init__(f"index object for {digest} changed concurrently {attempts} times")
        self.digest = digest


def read_index(store: Store, digest: str) -> tuple[IndexObject, str] | None:
    """The digest's index object and its ETag, or None when there is none.

    Raises :class:`indexer.schema.MalformedIndexObject` for an object that
    does not follow the schema: it is never trusted.
    """
    key = index_key(digest)
    try:
        raw, info = store.get(key)
    except ObjectNotFound:
        return None
    return IndexObject.from_json(raw, key=key), info.etag


def update_index(
    store: Store,
    digest: str,
    change: Callable[[IndexObject | None], IndexObject | None],
    *,
    attempts: int = MAX_ATTEMPTS,
    before_write: Callable[[IndexObject | None, IndexObject], None] | None = None,
) -> IndexObject | None:
    """Read-modify-write the digest's index object, retrying on concurrent writes.

    `change` gets the current object (None when absent) and returns the new
    one, or the current one unchanged (or None) to write nothing. Creation is
    conditioned on absence and replacement on the ETag read, so two writers
    at once never lose each other's change.

    `before_write` is called with the object read and the one about to replace it,
    before each attempt's write: where a change is recorded (the audit log) first, so
    the record of every write that lands is in the log before it, and the last record
    of a file is the last write's.
    """
    for _ in range(attempts):
        current = read_index(store, digest)
        existing, etag = current if current is not None else (None, None)
        updated = change(existing)
        if updated is None or updated == existing:
            return existing
        if updated.digest != digest:
            raise ValueError(f"an update of {digest} may not change its digest")
        if before_write is not None:
            before_write(existing, updated)
        try:
            put_over(store, index_key(digest), updated.to_json(), etag=etag)
        except PreconditionFailed:
            logger.info("index object changed concurrently, retrying", extra={"digest": digest})
            continue
        return updated
    raise ConcurrentUpdate(digest, attempts)


def holds_blob(store: Store, index_object: IndexObject) -> bool:
    """The store holds the digest's blob, at its indexed size."""
    try:
        return store.head(blob_key(index_object.digest)).size == index_object.size
    except ObjectNotFound:
        return False


def is_stored(regions: Regions, index_object: IndexObject) -> bool:
    """Indexed, not deleted, and a configured region the index names really holds the blob
    (else the file must be uploaded again).

    The index region is asked first, then the others in configuration order; one that
    cannot be reached is passed over. :class:`StoreUnavailable` only when no region the
    index names could be asked.
    """
    if not index_object.has_instances or index_object.deleted is not None:
        return False
    unreachable: list[StoreUnavailable] = []
    listed = [store for store in regions if store.region in index_object.instances]
    for store in listed:
        try:
            if holds_blob(store, index_object):
                return True
        except StoreUnavailable as exc:
            logger.warning(
                "could not ask %s for its copy: %s",
                store.region,
                exc.reason,
                extra={"digest": index_object.digest},
            )
            unreachable.append(exc)
    if listed and len(unreachable) == len(listed):
        raise unreachable[0]
    return False


def readable_index_objects(store: Store, *, skip: Collection[str] = ()) -> list[IndexObject]:
    """Every index object that can be read (a malformed one is logged and left out),
    but those of the digests in `skip`."""
    objects = []
    for info in store.list(INDEX_PREFIX):
        digest = info.key.removeprefix(INDEX_PREFIX).removesuffix(".json")
        if digest in skip or not is_valid_digest(digest):
            continue
        try:
            found = read_index(store, digest)
        except MalformedIndexObject as exc:
            logger.error("skipping %s", exc)
            continue
        if found is not None:
            objects.append(found[0])
    return objects
