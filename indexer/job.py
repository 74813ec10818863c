"""The indexer job: verify uploads, index them, keep the index consistent.

One pass (:meth:`Indexer.run_once`) handles every pending upload, then
(optionally) checks the index against the blobs, then brings the catalog up
to date. Every step is idempotent and ordered so that a pass killed between
any two steps leaves the store consistent, and the next pass finishes the work:

1. verify the staged bytes (size and sha512, streamed) at one version (ETag);
2. copy exactly that version to ``sha512/<digest>`` (conditioned on the ETag,
   so bytes replaced after verification are never copied);
3. create or update the index object (conditional writes, retried);
4. delete the staged bytes, then the pending record.

Nothing is downloadable before step 3, and step 3 names only verified bytes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from indexer.catalog import Catalog
from indexer.digests import hash_stream_read_ahead
from indexer.index import read_index, update_index
from indexer.intake import (
    FAILURES,
    PENDING,
    STAGING,
    MalformedRecord,
    Pending,
    failure_key,
    read_batch,
)
from indexer.schema import INDEX_PREFIX, IndexObject, Upload, blob_key, utc_timestamp
from indexer.stores import ObjectNotFound, PreconditionFailed, Regions, Store

logger = logging.getLogger(__name__)

PENDING_TTL = 24 * 3600  # pending records for uploads that never came expire after a day


@dataclass
class PassReport:
    """What one pass did, by digest."""

    indexed: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    removed_staging: int = 0
    batches: set[int] = field(default_factory=set)

    @property
    def changed(self) -> set[str]:
        return set(self.indexed + self.recorded + self.repaired)

    def summary(self) -> dict[str, int]:
        return {
            "indexed": len(self.indexed),
            "recorded": len(self.recorded),
            "failed": len(self.failed),
            "expired": len(self.expired),
            "waiting": len(self.waiting),
            "repaired": len(self.repaired),
            "removed_staging": self.removed_staging,
        }


class Indexer:
    """The only writer of index objects."""

    def __init__(
        self,
        regions: Regions,
        *,
        clock: Callable[[], float] = time.time,
        pending_ttl: float = PENDING_TTL,
    ) -> None:
        self.regions = regions
        self._index = regions.index
        self._clock = clock
        self._pending_ttl = pending_ttl
        self.catalog = Catalog(regions.index)

    def run_once(self, *, check: bool = True) -> PassReport:
        """One pass: pending uploads, then (with `check`) the consistency check."""
        report = PassReport()
        self.process_pending(report)
        if check:
            self.check_consistency(report)
            self.catalog.rebuild(self._index_objects(), self.catalog.batch_records())
        elif report.changed or report.batches:
            changed = [read_index(self._index, digest) for digest in sorted(report.changed)]
            batches = [read_batch(self._index, batch_id) for batch_id in sorted(report.batches)]
            self.catalog.update(
                [found[0] for found in changed if found is not None],
                [batch for batch in batches if batch is not None],
            )
        logger.info("indexer pass", extra=report.summary())
        return report

    # -- pending uploads ---------------------------------------------------

    def process_pending(self, report: PassReport) -> None:
        """Handle every pending record, oldest batch first within a digest."""
        for pending in sorted(self._pending(), key=lambda item: (item.digest, item.batch_id)):
            try:
                self._process(pending, report)
            except ObjectNotFound as exc:
                # Another indexer finished this upload under our feet.
                logger.info("pending upload went away: %s", exc, extra={"digest": pending.digest})

    def _pending(self) -> list[Pending]:
        records = []
        for info in self._index.list(PENDING):
            try:
                raw, _ = self._index.get(info.key)
                records.append(Pending.from_json(raw, key=info.key))
            except ObjectNotFound:
                continue
            except MalformedRecord as exc:
                logger.error("skipping %s", exc)
        return records

    def _process(self, pending: Pending, report: PassReport) -> None:
        found = read_index(self._index, pending.digest)
        current = found[0] if found is not None else None
        if current is not None and current.has_instances and current.deleted is None:
            self._record_arrival(pending, current, report)
            return
        if pending.staging_key is None:
            self._fail(pending, "the file was already stored at upload time but is gone", report)
            return
        store = self._upload_store(pending)
        try:
            staged = store.head(pending.staging_key)
        except ObjectNotFound:
            if self._clock() > pending.created + self._pending_ttl:
                self._fail(
                    pending,
                    "no upload arrived before the pending record expired",
                    report,
                    expired=True,
                )
            else:
                report.waiting.append(pending.digest)
            return
        if not self._verify(store, pending, staged.etag, report):
            return
        try:
            store.copy(pending.staging_key, blob_key(pending.digest), if_match=staged.etag)
        except PreconditionFailed:
            # Replaced after verification: verify the new bytes next pass.
            logger.warning(
                "staged upload changed after verification", extra={"digest": pending.digest}
            )
            report.waiting.append(pending.digest)
            return
        indexed = update_index(
            self._index,
            pending.digest,
            lambda existing: self._indexed(existing, pending, store.region),
        )
        if (
            indexed is None
            or indexed.visibility != pending.visibility
            or (indexed.size != pending.size)
        ):
            self._fail(
                pending, "the digest was indexed meanwhile with another visibility or size", report
            )
            return
        self._finish(pending, report)
        report.indexed.append(pending.digest)
        logger.info(
            "indexed upload",
            extra={"digest": pending.digest, "region": store.region, "batch": pending.batch_id},
        )

    def _verify(self, store: Store, pending: Pending, etag: str, report: PassReport) -> bool:
        assert pending.staging_key is not None
        try:
            with store.open(pending.staging_key, if_match=etag) as stream:
                hashed = hash_stream_read_ahead(stream)
        except PreconditionFailed:
            report.waiting.append(pending.digest)
            return False
        if hashed.size != pending.size:
            reason = f"size mismatch: expected {pending.size} bytes, received {hashed.size}"
        elif hashed.digest != pending.digest:
            reason = f"sha512 mismatch: received bytes hash to {hashed.digest}"
        else:
            return True
        self._fail(pending, reason, report)
        return False

    def _indexed(
        self, existing: IndexObject | None, pending: Pending, region: str
    ) -> IndexObject | None:
        now = utc_timestamp(self._clock())
        upload = _upload(pending)
        if existing is None:
            return IndexObject(
                digest=pending.digest,
                size=pending.size,
                visibility=pending.visibility,  # type: ignore[arg-type]
                instances=(region,),
                uploads=(upload,),
                verified_at=now,
                updated_at=now,
            )
        if existing.visibility != pending.visibility or existing.size != pending.size:
            return existing
        instances = tuple(sorted({*existing.instances, region}))
        uploads = (
            existing.uploads if _has_upload(existing, pending) else (*existing.uploads, upload)
        )
        return existing.with_changes(
            instances=instances,
            uploads=uploads,
            deleted=None,
            verified_at=existing.verified_at if existing.has_instances else now,
            updated_at=now,
        )

    def _record_arrival(self, pending: Pending, current: IndexObject, report: PassReport) -> None:
        """A batch named a file that is already stored and verified: note the batch."""
        if current.visibility != pending.visibility or current.size != pending.size:
            self._fail(
                pending, f"already stored as {current.visibility}, {current.size} bytes", report
            )
            return
        if not _has_upload(current, pending):
            now = utc_timestamp(self._clock())

            def change(existing: IndexObject | None) -> IndexObject | None:
                if existing is None or _has_upload(existing, pending):
                    return existing
                return existing.with_changes(
                    uploads=(*existing.uploads, _upload(pending)), updated_at=now
                )

            update_index(self._index, pending.digest, change)
            report.recorded.append(pending.digest)
        self._finish(pending, report)

    def _fail(
        self, pending: Pending, reason: str, report: PassReport, *, expired: bool = False
    ) -> None:
        """Record why an upload was refused, where operators look, and forget it."""
        record = {
            "digest": pending.digest,
            "batch_id": pending.batch_id,
            "filename": pending.filename,
            "author": pending.author,
            "size": pending.size,
            "visibility": pending.visibility,
            "reason": reason,
            "at": utc_timestamp(self._clock()),
        }
        self._index.put(
            failure_key(pending.digest, pending.batch_id),
            json.dumps(record, sort_keys=True).encode(),
            content_type="application/json",
        )
        logger.error(
            "upload refused: %s",
            reason,
            extra={"digest": pending.digest, "batch": pending.batch_id},
        )
        self._finish(pending, report)
        (report.expired if expired else report.failed).append(pending.digest)

    def _finish(self, pending: Pending, report: PassReport) -> None:
        # Staged bytes first: a pending record without them is handled again
        # harmlessly, staged bytes without a record would be orphans.
        if pending.staging_key is not None:
            self._upload_store(pending).delete(pending.staging_key)
        self._index.delete(pending.key)
        report.batches.add(pending.batch_id)

    def _upload_store(self, pending: Pending) -> Store:
        return self.regions.get(pending.region, self._index)

    # -- consistency -------------------------------------------------------

    def check_consistency(self, report: PassReport) -> None:
        """Every instance an index object names must hold the blob; staged bytes no pending
        record names are removed."""
        for index_object in self._index_objects():
            missing = [
                region for region in index_object.instances if not self._holds(region, index_object)
            ]
            if missing:
                self._drop_instances(index_object.digest, missing)
                report.repaired.append(index_object.digest)
        report.removed_staging += self._remove_orphaned_staging()

    def _holds(self, region: str, index_object: IndexObject) -> bool:
        if region not in self.regions:
            return True  # not configured here: not ours to judge
        try:
            return (
                self.regions[region].head(blob_key(index_object.digest)).size == index_object.size
            )
        except ObjectNotFound:
            return False

    def _drop_instances(self, digest: str, missing: Iterable[str]) -> None:
        gone = set(missing)
        now = utc_timestamp(self._clock())
        logger.error(
            "index named regions without the blob: %s", sorted(gone), extra={"digest": digest}
        )

        def change(existing: IndexObject | None) -> IndexObject | None:
            if existing is None or not gone & set(existing.instances):
                return existing
            instances = tuple(region for region in existing.instances if region not in gone)
            return existing.with_changes(instances=instances, updated_at=now)

        update_index(self._index, digest, change)

    def _remove_orphaned_staging(self) -> int:
        # Staging is listed before pending: a staged upload seen here whose
        # record is missing below was not written after the listing began.
        staged = [(store, info.key) for store in self.regions for info in store.list(STAGING)]
        named = {pending.staging_key for pending in self._pending()}
        removed = 0
        for store, key in staged:
            if key not in named:
                store.delete(key)
                removed += 1
        return removed

    def _index_objects(self) -> list[IndexObject]:
        objects = []
        for info in self._index.list(INDEX_PREFIX):
            digest = info.key.removeprefix(INDEX_PREFIX).removesuffix(".json")
            try:
                found = read_index(self._index, digest)
            except Exception as exc:  # a malformed object must not stop the pass
                logger.error("skipping index object %s: %s", info.key, exc)
                continue
            if found is not None:
                objects.append(found[0])
        return objects

    def failures(self) -> list[dict[str, object]]:
        """Uploads refused so far, for operators."""
        records = []
        for info in self._index.list(FAILURES):
            try:
                raw, _ = self._index.get(info.key)
                records.append(json.loads(raw))
            except (ObjectNotFound, ValueError):
                continue
        return sorted(
            records, key=lambda record: (str(record.get("at")), str(record.get("digest")))
        )


def _upload(pending: Pending) -> Upload:
    return Upload(
        pending.batch_id, pending.filename, pending.author, pending.message, pending.uploaded
    )


def _has_upload(index_object: IndexObject, pending: Pending) -> bool:
    return any(
        upload.batch_id == pending.batch_id and upload.filename == pending.filename
        for upload in index_object.uploads
    )
