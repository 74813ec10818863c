"""Replication: every verified file copied to every configured region, server-side.

A copy is listed by the index only once it is verified: it is copied straight
to ``sha512/<digest>`` in its region (nothing downloads from a region the
index does not list), streamed through sha512 there, and deleted when it is
not the file. The index records the ETag of each listed copy, so that the
consistency check notices from a listing alone a copy replaced or corrupted
behind the indexer's back (:mod:`indexer.consistency`).

Listing copies changes only ``instances`` and ``etags``: ``updated_at`` and
``verified_at`` say when the file changed, which a copy does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from indexer.digests import Hashed, hash_stream_read_ahead
from indexer.index import update_index
from indexer.schema import IndexObject, blob_key
from indexer.stores import ObjectNotFound, PreconditionFailed, Regions, Store, StoreUnavailable

logger = logging.getLogger(__name__)


class Outages:
    """The regions found unreachable in one pass, not asked again until the next
    (:meth:`clear`): one region down costs a pass its timeouts once, not once a file,
    and is logged once."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def clear(self) -> None:
        """Try every region again."""
        self._reasons.clear()

    def note(self, exc: StoreUnavailable) -> None:
        """The region `exc` names is unreachable for the rest of the pass."""
        if exc.region not in self._reasons:
            self._reasons[exc.region] = exc.reason
            logger.error(
                "region %s unreachable, skipped for the rest of this pass: %s",
                exc.region,
                exc.reason,
                extra={"region": exc.region},
            )

    def __contains__(self, region: object) -> bool:
        return region in self._reasons

    @property
    def regions(self) -> list[str]:
        """The regions found unreachable, sorted."""
        return sorted(self._reasons)


def hash_copy(store: Store, key: str, *, etag: str) -> Hashed:
    """The sha512 and size of the version `etag` of `key` in `store`, streamed
    (:class:`PreconditionFailed` when that version is gone)."""
    with store.open(key, if_match=etag) as stream:
        return hash_stream_read_ahead(stream)


def copy_verified(
    source: Store, destination: Store, index_object: IndexObject, *, etag: str | None
) -> str | None:
    """Copy the file's blob from `source` (only the version `etag`, when known) to
    `destination` and verify the copy; the copy's ETag, or None when no good copy was
    made. A copy that is not the file is deleted."""
    digest = index_object.digest
    key = blob_key(digest)
    try:
        copied = destination.copy_from(source, key, if_match=etag)
        hashed = hash_copy(destination, key, etag=copied.etag)
    except (ObjectNotFound, PreconditionFailed) as exc:
        # The source changed or went (the consistency check judges it), or another
        # writer replaced the copy while it was read: not a copy to list.
        logger.warning(
            "no copy from %s to %s: %s",
            source.region,
            destination.region,
            exc,
            extra={"digest": digest},
        )
        return None
    if hashed != Hashed(digest, index_object.size):
        destination.delete(key, every_version=True)
        logger.error(
            "the copy from %s to %s was not the file (%d bytes hashing to %s); deleted it",
            source.region,
            destination.region,
            hashed.size,
            hashed.digest,
            extra={"digest": digest},
        )
        return None
    return copied.etag


class Replicator:
    """Copies files to the configured regions that lack them, and lists the copies.

    A region found unreachable is not tried again until the next pass
    (:meth:`start_pass`, see :class:`Outages`), and the uploads go on.
    """

    def __init__(
        self,
        regions: Regions,
        outages: Outages | None = None,
        *,
        on_index_written: Callable[[str], None] = lambda digest: None,
    ) -> None:
        self._regions = regions
        self.outages = Outages() if outages is None else outages
        # Told the digest of each index object written here (and by the consistency check).
        self.on_index_written = on_index_written

    def start_pass(self) -> None:
        """Try every region again."""
        self.outages.clear()

    def fill(self, index_object: IndexObject, targets: Sequence[str]) -> dict[str, str]:
        """Copy the file from a listed region to each of `targets` and list the verified
        copies; the copies listed (region: ETag).

        A region that cannot be reached is skipped (logged): the next consistency
        check fills it. Copies of a file deleted meanwhile are deleted, not listed.
        """
        copies: dict[str, str] = {}
        for target in targets:
            etag = self._copy_to(index_object, self._regions[target])
            if etag is not None:
                copies[target] = etag
        return self._list(index_object.digest, copies) if copies else {}

    def _copy_to(self, index_object: IndexObject, destination: Store) -> str | None:
        """A verified copy in `destination` from the first listed region that gives one."""
        sources = [
            region
            for region in self._regions.names
            if region in index_object.instances and region != destination.region
        ]
        for region in sources:
            if destination.region in self.outages:
                return None
            if region in self.outages:
                continue
            try:
                etag = copy_verified(
                    self._regions[region],
                    destination,
                    index_object,
                    etag=index_object.etags.get(region),
                )
            except StoreUnavailable as exc:
                self.outages.note(exc)
                continue
            if etag is not None:
                return etag
        return None

    def _list(self, digest: str, copies: Mapping[str, str]) -> dict[str, str]:
        listed: dict[str, str] = {}

        def change(existing: IndexObject | None) -> IndexObject | None:
            listed.clear()
            if existing is None or existing.deleted is not None:
                return existing
            updated = existing
            for region, etag in copies.items():
                if region not in existing.instances:  # another writer's copy stays listed
                    updated = updated.with_copy(region, etag)
                    listed[region] = etag
            return updated

        after = update_index(self._regions.index, digest, change)
        self.on_index_written(digest)
        if after is None or after.deleted is not None:
            for region in copies:  # deleted meanwhile: its bytes go
                try:
                    self._regions[region].delete(blob_key(digest), every_version=True)
                except StoreUnavailable as exc:  # the consistency check deletes them later
                    self.outages.note(exc)
            return {}
        if listed:
            logger.info("replicated to %s", ", ".join(listed), extra={"digest": digest})
        return listed
