"""Management operations on stored files: change visibility, delete instances.

Both write the index object through :func:`indexer.index.update_index`, so
they are conditional and never lose a concurrent indexer pass's change, and
both bring the file's catalog entry up to date. The gateway's
``PATCH /file/sha512/<digest>`` and the indexer's ``set-visibility`` and
``delete`` commands call them: the indexer's code is the only writer of
index objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer.audit import AuditLog
from indexer.catalog import Catalog
from indexer.index import update_index
from indexer.schema import IndexObject, Tombstone, Visibility, blob_key, utc_timestamp
from indexer.stores import Regions

logger = logging.getLogger(__name__)

MAX_REASON = 1000


class UnknownFile(LookupError):
    """No index object names the digest."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"no file with digest {digest}")
        self.digest = digest


@dataclass(frozen=True, slots=True)
class SetVisibility:
    """Make the file public or internal."""

    visibility: Visibility
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DeleteInstances:
    """Delete every copy of the file's bytes, leaving a tombstone."""

    reason: str = ""


Operation = SetVisibility | DeleteInstances


def apply(
    regions: Regions,
    digest: str,
    operations: list[Operation],
    *,
    by: str,
    clock: Callable[[], float] = time.time,
) -> IndexObject:
    """Apply `operations` in order to the file; the index object after them.

    Raises :class:`UnknownFile` when the digest is not indexed.
    """
    current: IndexObject | None = None
    for operation in operations:
        if isinstance(operation, SetVisibility):
            current = _set_visibility(regions, digest, operation, by=by, clock=clock)
        else:
            current = _delete_instances(regions, digest, operation, by=by, clock=clock)
    if current is None:
        raise UnknownFile(digest)
    Catalog(regions.index).update([digest], [])
    return current


def _set_visibility(
    regions: Regions, digest: str, operation: SetVisibility, *, by: str, clock: Callable[[], float]
) -> IndexObject:
    now = utc_timestamp(clock())
    log = AuditLog(regions.index, clock=clock)

    def change(existing: IndexObject | None) -> IndexObject | None:
        # Written and recorded even when the file already has that visibility: the log
        # then ends with this request, which undoes one recorded whose write failed.
        if existing is None:
            return None
        return existing.with_changes(visibility=operation.visibility, updated_at=now)

    recorded = False

    def record(existing: IndexObject | None, updated: IndexObject) -> None:
        # The record first, of the very change about to be written: a change a crash
        # leaves half-made is in the log, and a rebuild (which follows the log) makes
        # it whole; of two changes at once, the log ends with the one that lands last.
        nonlocal recorded
        recorded = True
        log.append(
            "visibility",
            who=by,
            why=operation.reason,
            digest=digest,
            details={"from": existing.visibility if existing else None, "to": updated.visibility},
            at=now,
        )

    updated = update_index(regions.index, digest, change, before_write=record)
    if updated is None:
        raise UnknownFile(digest)
    if not recorded:  # already so, this very second: recorded all the same
        record(updated, updated)
    logger.info(
        "visibility set to %s by %s: %s",
        operation.visibility,
        by,
        operation.reason,
        extra={"digest": digest},
    )
    return updated


def _delete_instances(
    regions: Regions,
    digest: str,
    operation: DeleteInstances,
    *,
    by: str,
    clock: Callable[[], float],
) -> IndexObject:
    """The record, then the tombstone (downloads answer 404 from then on), then the
    bytes, in every configured region: a pass killed between leaves only unreferenced
    bytes, and a rerun deletes them."""
    now = utc_timestamp(clock())
    log = AuditLog(regions.index, clock=clock)

    def change(existing: IndexObject | None) -> IndexObject | None:
        if existing is None:
            return None
        if not existing.instances and existing.deleted is not None:
            return existing  # already deleted: keep the first tombstone
        tombstone = Tombstone(
            by=by[:1024], at=now, reason=operation.reason, regions=tuple(existing.instances)
        )
        return existing.with_changes(instances=(), etags={}, deleted=tombstone, updated_at=now)

    def record(existing: IndexObject | None, updated: IndexObject) -> None:
        regions_deleted = sorted(updated.deleted.regions) if updated.deleted else []
        log.append(
            "delete",
            who=by,
            why=operation.reason,
            digest=digest,
            details={"regions": regions_deleted},
            at=now,
        )

    updated = update_index(regions.index, digest, change, before_write=record)
    if updated is None:
        raise UnknownFile(digest)
    for store in regions:
        # Every version: a versioned bucket would keep the deleted bytes behind a marker.
        store.delete(blob_key(digest), every_version=True)
    logger.info("instances deleted by %s: %s", by, operation.reason, extra={"digest": digest})
    return updated
