"""The consistency check: index objects against the copies in every configured region.

``sha512/`` is listed once per region (listings give sizes and ETags: no
object is read for a copy that is as recorded). Then, for each index object:

- a listed region whose copy is missing or of another size is dropped from
  ``instances`` (after a HEAD confirms it: the listing may be older than the
  object); a copy of the right size under another ETag than the one recorded
  (the same bytes written again, by a copied data directory or a multipart
  rewrite, or damage) is hashed once: the file's bytes have their new ETag
  recorded, other bytes are dropped. Dropped regions are restored from a good
  copy, and configured regions without a copy are filled the same way
  (:mod:`indexer.replication`: copied, verified, then listed);
- regions that are not configured are dropped once a configured region holds
  a verified copy (a region mislabelled in the configuration strips nothing);
- an object written before ETags were recorded adopts the ETag of each copy
  that hashes to the file;
- a region that cannot be reached is neither dropped nor filled (logged once,
  :class:`indexer.replication.Outages`); the others are checked;
- a deleted file (a tombstone) is never restored; its bytes left in a region
  are deleted.

With no good copy left anywhere, the file ends with no instances: it must be
uploaded again. Changes leave ``updated_at`` and ``verified_at`` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from indexer.digests import Hashed
from indexer.index import read_index, update_index
from indexer.replication import Replicator, hash_copy
from indexer.schema import BLOB_PREFIX, IndexObject, MalformedIndexObject, blob_key
from indexer.stores import (
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

# Each region's copies by key, as one listing found them.
Listings = Mapping[str, Mapping[str, ObjectInfo]]


@dataclass
class Repairs:
    """What a check changed, by digest (and region, for copies made or hashed)."""

    repaired: list[str] = field(default_factory=list)
    replicated: list[tuple[str, str]] = field(default_factory=list)
    restored: list[tuple[str, str]] = field(default_factory=list)
    reverified: list[tuple[str, str]] = field(default_factory=list)
    removed_blobs: int = 0
    malformed: list[str] = field(default_factory=list)
    unconfigured_only: int = 0


@dataclass
class _Verdict:
    """What the check found of one file's listed copies, by region."""

    good: set[str] = field(default_factory=set)
    bad: set[str] = field(default_factory=set)  # configured, without the file
    unconfigured: set[str] = field(default_factory=set)
    rewritten: dict[str, str] = field(default_factory=dict)  # good, under a new ETag

    @property
    def dropped(self) -> set[str]:
        # A region not configured goes only once a configured one holds the file: one
        # run with a region mislabelled must not strip every file of its copies.
        return self.bad | (self.unconfigured if self.good else set())


class ConsistencyCheck:
    """Brings index objects and the copies of every configured region into agreement."""

    def __init__(self, regions: Regions, replicator: Replicator) -> None:
        self._regions = regions
        self._replicator = replicator
        self._outages = replicator.outages

    def run(self, index_objects: Iterable[IndexObject]) -> Repairs:
        """Check each of `index_objects` (read lazily: the fresher, the fewer false alarms)
        against listings taken first."""
        listings = self._list_copies()
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
        if repairs.unconfigured_only:
            logger.warning(
                "%d files are listed only in regions not configured, and kept listed:"
                " is a region misnamed in the configuration? (configured: %s)",
                repairs.unconfigured_only,
                ", ".join(self._regions.names),
            )
        return repairs

    def _list_copies(self) -> dict[str, dict[str, ObjectInfo]]:
        """Each reachable region's copies by key; an unreachable region is left out."""
        listings = {}
        for store in self._regions:
            if store.region in self._outages:
                continue
            try:
                listings[store.region] = {info.key: info for info in store.list(BLOB_PREFIX)}
            except StoreUnavailable as exc:
                if store is self._regions.index:
                    raise  # no index object could be read either
                self._outages.note(exc)
        return listings

    def _check(self, found: IndexObject, listings: Listings, repairs: Repairs) -> None:
        digest = found.digest
        verdict = self._judge(found, listings)
        current: IndexObject | None = found
        if verdict.unconfigured and not verdict.good:
            repairs.unconfigured_only += 1
        if verdict.dropped or verdict.rewritten:
            _log_dropped(digest, verdict)
            if verdict.dropped:
                repairs.repaired.append(digest)
            repairs.reverified.extend((digest, region) for region in sorted(verdict.rewritten))
            current = self._drop_and_record(found, verdict)
        if current is None or current.deleted is not None:
            return
        targets = [
            region
            for region in self._regions.names
            if region not in current.instances and region not in self._outages
        ]
        if not targets:
            return
        if not any(region in self._regions for region in current.instances):
            if verdict.bad:  # said once, when the last copy goes
                logger.error("no good copy left: upload the file again", extra={"digest": digest})
            return
        for region in self._replicator.fill(current, targets):
            (repairs.restored if region in verdict.bad else repairs.replicated).append(
                (digest, region)
            )

    def _judge(self, found: IndexObject, listings: Listings) -> _Verdict:
        """Each listed region's copy: good, bad, or in a region not configured. A region
        that cannot be reached, or whose copy changed while it was hashed, is left out:
        neither dropped nor filled."""
        verdict = _Verdict()
        key = blob_key(found.digest)
        for region in found.instances:
            if region not in self._regions:
                verdict.unconfigured.add(region)
                continue
            if region in self._outages:
                continue
            try:
                info = self._verify(found, region, listings[region].get(key))
            except StoreUnavailable as exc:
                self._outages.note(exc)
                continue
            except PreconditionFailed:  # written again while hashed: the next check judges
                continue
            if info is None:
                verdict.bad.add(region)
                continue
            verdict.good.add(region)
            if info.etag != found.etags.get(region):
                verdict.rewritten[region] = info.etag
        return verdict

    def _verify(
        self, found: IndexObject, region: str, listed: ObjectInfo | None
    ) -> ObjectInfo | None:
        """The region's copy of the file, or None when it holds none: the copy is missing,
        of another size, or (hashed) other bytes. A copy not as recorded in the listing is
        looked at again: the listing may be older than `found`."""
        if _is_recorded(found, region, listed):
            return listed
        store = self._regions[region]
        key = blob_key(found.digest)
        try:
            info = store.head(key)
            if _is_recorded(found, region, info):
                return info
            if info.size != found.size:
                return None
            # The right size under another ETag, or none recorded yet: the same bytes
            # written again (a copied data directory, a multipart rewrite) or damage.
            # Only hashing tells them apart; a copy is never dropped without it.
            hashed = hash_copy(store, key, etag=info.etag)
        except ObjectNotFound:
            return None
        if hashed != Hashed(found.digest, found.size):
            return None
        logger.warning(
            "the copy in %s is the file under a new ETag %s (was %s): recorded it",
            region,
            info.etag,
            found.etags.get(region, "not recorded"),
            extra={"digest": found.digest},
        )
        return info

    def _drop_and_record(self, found: IndexObject, verdict: _Verdict) -> IndexObject | None:
        dropped = verdict.dropped

        def change(existing: IndexObject | None) -> IndexObject | None:
            if existing is None or existing.deleted is not None:
                return existing
            # A region copied again since `found` was read keeps its new copy.
            unchanged = {
                region
                for region in existing.instances
                if region not in self._regions
                or existing.etags.get(region) == found.etags.get(region)
            }
            updated = existing.without_regions(dropped & unchanged)
            for region, etag in verdict.rewritten.items():
                if region in unchanged:
                    updated = updated.with_copy(region, etag)
            return updated

        updated = update_index(self._regions.index, found.digest, change)
        self._replicator.on_index_written(found.digest)
        return updated

    def _remove_deleted(self, found: IndexObject, listings: Listings) -> int:
        """Delete the bytes a deleted file left in any reachable region; how many."""
        key = blob_key(found.digest)
        holding = [region for region, listing in listings.items() if key in listing]
        if not holding:
            return 0
        fresh = read_index(self._regions.index, found.digest)
        if fresh is None or fresh[0].deleted is None:
            return 0  # uploaded again since: its bytes are the new upload's
        removed = []
        for region in holding:
            if region in self._outages:
                continue
            try:
                self._regions[region].delete(key, every_version=True)
            except StoreUnavailable as exc:
                self._outages.note(exc)
                continue
            removed.append(region)
        if removed:
            logger.warning(
                "deleted the bytes a deleted file left in %s",
                ", ".join(removed),
                extra={"digest": found.digest},
            )
        return len(removed)


def _log_dropped(digest: str, verdict: _Verdict) -> None:
    if verdict.bad:
        logger.error(
            "the index listed regions without a good copy: %s",
            ", ".join(sorted(verdict.bad)),
            extra={"digest": digest},
        )
    if verdict.dropped - verdict.bad:
        logger.info(
            "no longer listed in regions not configured: %s",
            ", ".join(sorted(verdict.dropped - verdict.bad)),
            extra={"digest": digest},
        )


def _is_recorded(index_object: IndexObject, region: str, info: ObjectInfo | None) -> bool:
    """`info` is the region's verified copy: of the file's size, with the ETag recorded."""
    return (
        info is not None
        and info.size == index_object.size
        and index_object.etags.get(region) == info.etag
    )
