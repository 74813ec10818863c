"""The consistency check: index objects against the copies in every configured region.

``sha512/`` is listed once per region (listings give sizes and ETags: no
object is read for a copy that is as recorded). Then, for each index object:

- a listed region whose copy is missing, of another size, or of another ETag
  than the one recorded is dropped from ``instances`` (after a HEAD confirms
  it: the listing may be older than the object), then restored from a good
  copy; configured regions without a copy are filled the same way
  (:mod:`indexer.replication`: copied, verified, then listed);
- regions that are not configured are dropped;
- an object written before ETags were recorded adopts the listed ETag of a
  copy of the right size;
- a deleted file (a tombstone) is never restored; its bytes left in a region
  are deleted.

With no good copy left anywhere, the file ends with no instances: it must be
uploaded again. Changes leave ``updated_at`` and ``verified_at`` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from indexer.index import read_index, update_index
from indexer.replication import Replicator
from indexer.schema import BLOB_PREFIX, IndexObject, MalformedIndexObject, blob_key
from indexer.stores import ObjectInfo, ObjectNotFound, Regions

logger = logging.getLogger(__name__)

# Each region's copies by key, as one listing found them.
Listings = Mapping[str, Mapping[str, ObjectInfo]]


@dataclass
class Repairs:
    """What a check changed, by digest (and region, for copies made)."""

    repaired: list[str] = field(default_factory=list)
    replicated: list[tuple[str, str]] = field(default_factory=list)
    restored: list[tuple[str, str]] = field(default_factory=list)
    removed_blobs: int = 0
    malformed: list[str] = field(default_factory=list)


class ConsistencyCheck:
    """Brings index objects and the copies of every configured region into agreement."""

    def __init__(self, regions: Regions, replicator: Replicator) -> None:
        self._regions = regions
        self._replicator = replicator

    def run(self, index_objects: Iterable[IndexObject]) -> Repairs:
        """Check each of `index_objects` (read lazily: the fresher, the fewer false alarms)
        against listings taken first."""
        listings = {
            store.region: {info.key: info for info in store.list(BLOB_PREFIX)}
            for store in self._regions
        }
        repairs = Repairs()
        for index_object in index_objects:
            try:
                if index_object.deleted is not None:
                    repairs.removed_blobs += self._remove_deleted(index_object, listings)
                else:
                    self._check(index_object, listings, repairs)
            except MalformedIndexObject as exc:  # changed under the check: set aside
                logger.error("skipping index object %s: %s", exc.key, exc)
                repairs.malformed.append(exc.key)
        return repairs

    def _check(self, found: IndexObject, listings: Listings, repairs: Repairs) -> None:
        digest = found.digest
        good, bad = self._judge(found, listings)
        adopted = {region: info.etag for region, info in good.items() if region not in found.etags}
        current: IndexObject | None = found
        if bad or adopted:
            _log_dropped(digest, bad, set(self._regions.names))
            if bad:
                repairs.repaired.append(digest)
            current = self._drop_and_adopt(found, bad, adopted)
        if current is None or current.deleted is not None:
            return
        targets = [region for region in self._regions.names if region not in current.instances]
        if not targets:
            return
        if not any(region in self._regions for region in current.instances):
            if bad:  # said once, when the last copy goes
                logger.error("no good copy left: upload the file again", extra={"digest": digest})
            return
        for region in self._replicator.fill(current, targets):
            (repairs.restored if region in bad else repairs.replicated).append((digest, region))

    def _judge(
        self, found: IndexObject, listings: Listings
    ) -> tuple[dict[str, ObjectInfo], set[str]]:
        """The listed regions' good copies, and the regions without one: not configured,
        or a copy missing or other than recorded (confirmed by a HEAD: the listing may be
        older than `found`)."""
        key = blob_key(found.digest)
        good: dict[str, ObjectInfo] = {}
        bad = set()
        for region in found.instances:
            if region not in self._regions:
                bad.add(region)
                continue
            info = listings[region].get(key)
            if not _is_recorded(found, region, info):
                try:
                    info = self._regions[region].head(key)
                except ObjectNotFound:
                    info = None
            if info is not None and _is_recorded(found, region, info):
                good[region] = info
            else:
                bad.add(region)
        return good, bad

    def _drop_and_adopt(
        self, found: IndexObject, bad: set[str], adopted: Mapping[str, str]
    ) -> IndexObject | None:
        def change(existing: IndexObject | None) -> IndexObject | None:
            if existing is None or existing.deleted is not None:
                return existing
            # A region copied again since `found` was read keeps its new copy.
            gone = {
                region
                for region in bad & set(existing.instances)
                if region not in self._regions
                or existing.etags.get(region) == found.etags.get(region)
            }
            updated = existing.without_regions(gone)
            for region, etag in adopted.items():
                if region in existing.instances and region not in existing.etags:
                    updated = updated.with_copy(region, etag)
            return updated

        return update_index(self._regions.index, found.digest, change)

    def _remove_deleted(self, found: IndexObject, listings: Listings) -> int:
        """Delete the bytes a deleted file left in any region; how many."""
        key = blob_key(found.digest)
        holding = [region for region in self._regions.names if key in listings[region]]
        if not holding:
            return 0
        fresh = read_index(self._regions.index, found.digest)
        if fresh is None or fresh[0].deleted is None:
            return 0  # uploaded again since: its bytes are the new upload's
        for region in holding:
            self._regions[region].delete(key)
        logger.warning(
            "deleted the bytes a deleted file left in %s",
            ", ".join(holding),
            extra={"digest": found.digest},
        )
        return len(holding)


def _log_dropped(digest: str, bad: set[str], configured: set[str]) -> None:
    if bad & configured:
        logger.error(
            "the index listed regions without a good copy: %s",
            ", ".join(sorted(bad & configured)),
            extra={"digest": digest},
        )
    if bad - configured:
        logger.info(
            "no longer listed in regions not configured: %s",
            ", ".join(sorted(bad - configured)),
            extra={"digest": digest},
        )


def _is_recorded(index_object: IndexObject, region: str, info: ObjectInfo | None) -> bool:
    """`info` is the region's verified copy: of the file's size, with the recorded ETag
    (any ETag, for an object written before ETags were recorded)."""
    if info is None or info.size != index_object.size:
        return False
    recorded = index_object.etags.get(region)
    return recorded is None or recorded == info.etag
