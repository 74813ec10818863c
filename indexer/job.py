"""The indexer job: verify uploads, index them, keep the index consistent.

One pass (:meth:`Indexer.run_once`) handles every pending upload, then
(optionally) checks the index against the blobs, then brings the catalog up
to date. Every step is idempotent and ordered so that a pass killed between
any two steps leaves the store consistent, and the next pass finishes the work:

1. verify the staged bytes (size and sha512, streamed) in a form nothing can
   change: on a versioned store, the staged version, read by its id; when the
   staging key's signed PUT URLs expired more than ``late_put`` seconds ago (no
   PUT can land any more), the staged object itself, read on the condition of
   its ETag; otherwise a private copy at a key no signed URL can write to
   (``verifying/``);
2. copy exactly the verified bytes to ``sha512/<digest>`` (that version, on that
   ETag, or the private copy), so bytes the uploader PUTs after verification are
   never copied: one server-side copy where the store pins the bytes, two where
   nothing does;
3. create or update the index object (conditional writes, retried);
4. copy the file to every other configured region, verify each copy, and list
   the good ones (:mod:`indexer.replication`);
5. update the catalog, then delete the staged bytes, then the pending record.

Nothing is downloadable before step 3, and the index names only verified
copies. A pass killed before step 4 ends leaves the pending record: the next
pass finds the file stored and copies it where it is missing (as the
consistency check, :mod:`indexer.consistency`, does for every file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from indexer.audit import AuditLog
from indexer.catalog import Catalog
from indexer.consistency import ConsistencyCheck
from indexer.digests import hash_stream_read_ahead
from indexer.index import is_stored, read_index, update_index
from indexer.intake import (
    FAILURES,
    LATE_PUT,
    PENDING,
    STAGING,
    VERIFYING,
    MalformedRecord,
    Pending,
    failure_key,
    read_batch,
)
from indexer.last_pass import LastPass, record_pass
from indexer.progress import QUIET, Progress
from indexer.replication import Outages, Replicator
from indexer.schema import (
    INDEX_PREFIX,
    IndexObject,
    MalformedIndexObject,
    Upload,
    blob_key,
    summary,
    utc_timestamp,
    with_uploads,
)
from indexer.site.job import SiteJob
from indexer.stores import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    Store,
    StoreError,
    StoreUnavailable,
)
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

PENDING_TTL = 24 * 3600  # pending records for uploads that never came expire after a day
MAX_AUTHOR = 1024  # index_schema.json


@dataclass
class PassReport:
    """What one pass did, by digest."""

    indexed: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    replicated: list[tuple[str, str]] = field(default_factory=list)  # (digest, region)
    restored: list[tuple[str, str]] = field(default_factory=list)  # (digest, region)
    reverified: list[tuple[str, str]] = field(default_factory=list)  # (digest, region)
    deferred: list[str] = field(default_factory=list)  # uploads waiting for a region
    unreachable: list[str] = field(default_factory=list)  # regions skipped this pass
    removed_staging: int = 0
    verified_bytes: int = 0
    removed_blobs: int = 0
    batches: set[int] = field(default_factory=set)
    # Pending records listed and not finished by the pass (None: the pass listed none),
    # and the creation time of the oldest it read (records it did not read are not aged).
    pending: int | None = None
    oldest_pending: float | None = None

    @property
    def is_partial(self) -> bool:
        """Something was set aside (a malformed object, or a region that could not be
        reached and what waits for it): the pass did not do everything."""
        return bool(self.malformed or self.deferred or self.unreachable)

    @property
    def changed(self) -> set[str]:
        copied = [digest for digest, _ in self.replicated + self.restored]
        return set(self.indexed + self.recorded + self.repaired + copied)

    def summary(self) -> dict[str, int]:
        return {
            "indexed": len(self.indexed),
            "recorded": len(self.recorded),
            "failed": len(self.failed),
            "expired": len(self.expired),
            "waiting": len(self.waiting),
            "repaired": len(self.repaired),
            "replicated": len(self.replicated),
            "restored": len(self.restored),
            "reverified": len(self.reverified),
            "malformed": len(self.malformed),
            "deferred": len(self.deferred),
            "unreachable": len(self.unreachable),
            "removed_staging": self.removed_staging,
            "verified_bytes": self.verified_bytes,
            "removed_blobs": self.removed_blobs,
        }


class Indexer:
    """The only writer of index objects."""

    def __init__(
        self,
        regions: Regions,
        *,
        clock: Callable[[], float] = time.time,
        pending_ttl: float = PENDING_TTL,
        progress: Progress = QUIET,
        render_site: bool = False,
        on_index_written: Callable[[str], None] = lambda digest: None,
        late_put: float = LATE_PUT,
    ) -> None:
        """`on_index_written` is told the digest of each index object a pass writes (an
        upload, a copy, a repair), as soon as it is written: the gateway forgets its cached
        answer."""
        self.regions = regions
        self._on_index_written = on_index_written
        self.site = SiteJob(regions.index) if render_site else None
        self._index = regions.index
        self._clock = clock
        self._pending_ttl = pending_ttl
        self._late_put = late_put
        self._progress = progress
        self._known_pending: dict[str, Pending] = {}
        self.audit = AuditLog(regions.index, clock=clock)
        self.catalog = Catalog(regions.index)
        self._outages = Outages()
        self._replicator = Replicator(regions, self._outages, on_index_written=on_index_written)
        self._consistency = ConsistencyCheck(regions, self._replicator)

    def run_once(self, *, check: bool = True) -> PassReport:
        """One pass: pending uploads, then (with `check`) the consistency check.

        Pending records are forgotten last, after the index and the catalog
        name their work: a pass killed before that leaves them, and the next
        pass finds the work done and brings the catalog up to date. A check
        that fails still lets the uploads this pass finished reach the catalog
        and be forgotten; then its error is raised.
        """
        report = PassReport()
        started = self._clock()
        self._replicator.start_pass()
        finished = self.process_pending(report, every=check)
        failed: Exception | None = None
        checked: list[IndexObject] = []
        if check:
            try:
                checked = self.check_consistency(report)
            except Exception as exc:  # raised below, once the finished uploads are recorded
                failed = exc
        if check and failed is None:
            # The objects the check read: the catalog reads again only the entries that
            # differ from its shards (those the check repaired among them).
            self.catalog.rebuild(checked, self.catalog.batch_records())
            self.catalog.sweep()
            self.catalog.feed.trim()
        elif report.changed or report.batches:
            self.catalog.update(sorted(report.changed), sorted(report.batches))
        for pending in finished:
            self._forget(pending)
        report.unreachable = self._outages.regions
        if failed is not None:
            raise failed
        if self.site is not None:
            self.site.refresh()
        self._record_pass(LastPass(started, self._clock()))
        summary = report.summary()
        # A quiet loop stays quiet: passes that did something are logged at info.
        level = logging.INFO if any(summary.values()) else logging.DEBUG
        logger.log(level, "indexer pass", extra=summary)
        return report

    def _record_pass(self, last: LastPass) -> None:
        """Say the pass ended (what gateways' heartbeats read); a marker that cannot be
        written is only a warning: the work is done, the next pass writes it."""
        try:
            record_pass(self._index, last)
        except StoreError as exc:
            logger.warning("could not record the end of the pass: %s", exc)

    # -- pending uploads ---------------------------------------------------

    def process_pending(self, report: PassReport, *, every: bool = True) -> list[Pending]:
        """Handle every pending record, oldest batch first within a digest; the ones whose
        work is done (indexed, recorded or refused), to forget.

        Without `every` (a frequent pass), a record this process has not read yet whose
        bytes are not staged is not read either: it waits, and costs nothing (checking
        passes read it, and expire it when its day is out).
        """
        finished: list[Pending] = []
        batches = _BatchMessages(self._index)
        staged = _Staged()
        skipped = None if every else staged.digests(self.regions, self._outages)
        records = sorted(
            self._pending(report, staged=skipped), key=lambda item: (item.digest, item.batch_id)
        )
        with self._progress.phase("pending uploads", total=len(records)) as phase:
            for pending in records:
                phase.advance(1, pending.size)
                self._handle(pending, batches, staged, report, finished)
        done = {pending.key for pending in finished}
        report.pending = (report.pending or 0) - len(done)
        report.oldest_pending = min(
            (pending.created for pending in records if pending.key not in done), default=None
        )
        return finished

    def _handle(
        self,
        pending: Pending,
        batches: _BatchMessages,
        staged: _Staged,
        report: PassReport,
        finished: list[Pending],
    ) -> None:
        """One pending record; a failure of its own is logged and set aside."""
        if self._upload_store(pending).region in self._outages:
            report.deferred.append(pending.digest)  # its bytes wait in a region found down
            return
        try:
            is_finished = self._process(pending, batches, staged, report)
        except StoreUnavailable as exc:
            if exc.region == self._index.region:
                raise  # nothing is indexed without the index region
            # A region this upload needs is down: the upload waits for a later pass,
            # the others go on.
            self._outages.note(exc)
            logger.warning(
                "upload waits for region %s: %s",
                exc.region,
                exc.reason,
                extra={"digest": pending.digest},
            )
            report.deferred.append(pending.digest)
            return
        except ObjectNotFound as exc:
            # Another indexer finished this upload under our feet, or the staged bytes
            # (the version verified) were deleted: a later pass sees which.
            logger.info("pending upload went away: %s", exc, extra={"digest": pending.digest})
            return
        except MalformedIndexObject as exc:
            # Set aside, untouched, for an operator: never trusted, never overwritten.
            # The upload waits; the rest of the pass goes on.
            logger.error("skipping upload: %s", exc, extra={"digest": pending.digest})
            report.malformed.append(exc.key)
            return
        except (ValueError, TypeError, OverflowError) as exc:
            # Whatever else a record of this upload holds that nothing could check:
            # this upload waits for an operator, the others go on.
            logger.error(
                "skipping upload %s: %s: %s",
                pending.key,
                type(exc).__name__,
                exc,
                extra={"digest": pending.digest},
            )
            report.malformed.append(pending.key)
            return
        if is_finished:
            finished.append(pending)
            report.batches.add(pending.batch_id)

    def _pending(
        self, report: PassReport | None = None, *, staged: set[str] | None = None
    ) -> list[Pending]:
        """Every pending record: one listing, and a read only for records this indexer has
        not seen before (a record never changes once written). With `staged` (the digests
        with staged bytes), a record waiting for bytes that are not there is not read."""
        records = []
        known, self._known_pending = self._known_pending, {}
        listed = 0
        for info in self._index.list(PENDING):
            listed += 1
            pending = known.get(info.key)
            if pending is None and staged is not None and _awaits(info.key, staged):
                if report is not None:
                    report.waiting.append(_digest_of(info.key))
                continue
            if pending is None:
                try:
                    raw, _ = self._index.get(info.key)
                    pending = Pending.from_json(raw, key=info.key)
                except ObjectNotFound:
                    continue
                except MalformedRecord as exc:
                    logger.error("skipping %s", exc)
                    if report is not None:
                        report.malformed.append(exc.key)
                    continue
            self._known_pending[info.key] = pending
            records.append(pending)
        if report is not None:
            report.pending = listed
        return records

    def _process(
        self, pending: Pending, batches: _BatchMessages, staged: _Staged, report: PassReport
    ) -> bool:
        store = self._upload_store(pending)
        is_waiting = pending.staging_key is not None and not staged.holds(
            store, pending.staging_key
        )
        if is_waiting and self._clock() <= pending.created + self._pending_ttl:
            # Waiting for its bytes: no store call until they come or the record expires.
            report.waiting.append(pending.digest)
            return False
        found = read_index(self._index, pending.digest)
        current = found[0] if found is not None else None
        if current is not None and current.deleted is not None and _has_upload(current, pending):
            # Indexed, then deleted, by a pass killed before it forgot the record: done.
            # Its staged bytes are not a new upload, and must not bring the file back.
            return True
        if current is not None and not _agrees(current, pending):
            # Checked before any byte is copied: refused bytes never reach sha512/.
            reason = f"already indexed as {current.visibility}, {current.size} bytes"
            return self._fail(pending, reason, report)
        if current is not None and is_stored(self.regions, current):
            return self._record_arrival(pending, batches, report)
        if pending.staging_key is None:
            reason = "the file was stored at upload time but is gone; upload it again"
            return self._fail(pending, reason, report)
        if is_waiting:  # and expired, or it would have waited above
            reason = "no upload arrived before the pending record expired"
            return self._fail(pending, reason, report, expired=True)
        try:
            etag = self._store_verified(store, pending)
        except _Refused as refused:
            return self._fail(pending, str(refused), report)
        return self._index_verified(pending, _Copy(store.region, etag), current, batches, report)

    def _index_verified(
        self,
        pending: Pending,
        copy: _Copy,
        current: IndexObject | None,
        batches: _BatchMessages,
        report: PassReport,
    ) -> bool:
        """List the verified upload in the index, then copy it to the other regions."""
        # The configured regions `current` lists hold no copy (is_stored said so, or could
        # not reach them: they are filled again like any region without a copy).
        lost = {} if current is None else _configured_etags(current, self.regions.names)
        uploads = _uploads(pending, batches)
        now = utc_timestamp(self._clock())

        def record(existing: IndexObject | None, updated: IndexObject) -> None:
            # The record first, of the very write about to land (a pass killed between
            # the two leaves a record a rerun's own supersedes; never a write without one).
            self.audit.append(
                "verified",
                who=pending.author,
                digest=pending.digest,
                batch_id=pending.batch_id,
                details={
                    "region": copy.region,
                    "size": pending.size,
                    "visibility": pending.visibility,
                },
                at=now,
            )

        indexed = update_index(
            self._index,
            pending.digest,
            lambda existing: self._indexed(existing, pending, uploads, copy, lost, now),
            before_write=record,
        )
        self._on_index_written(pending.digest)
        if indexed is None or not _agrees(indexed, pending):
            reason = "the digest was indexed meanwhile with another visibility or size"
            return self._fail(pending, reason, report)
        report.indexed.append(pending.digest)
        report.verified_bytes += pending.size
        logger.info(
            "indexed upload",
            extra={"digest": pending.digest, "region": copy.region, "batch": pending.batch_id},
        )
        self._replicate(indexed, report)
        return True

    def _replicate(self, index_object: IndexObject, report: PassReport) -> None:
        """Copy a stored file to the configured regions it is missing from."""
        targets = [name for name in self.regions.names if name not in index_object.instances]
        if targets and index_object.deleted is None:
            copies = self._replicator.fill(index_object, targets)
            report.replicated.extend((index_object.digest, region) for region in copies)

    def _store_verified(self, store: Store, pending: Pending) -> str:
        """Put the staged upload at ``sha512/<digest>`` if it is the declared file, and
        return the ETag of that copy; else raise :class:`_Refused` saying why not.

        What is verified is exactly what is copied, whatever the uploader PUTs
        meanwhile (ETags cannot tell apart two uploads with the same MD5): the staged
        object is read and copied once where nothing can change its bytes
        (:meth:`_pinned`), else through a private copy no signed URL can write to.
        """
        assert pending.staging_key is not None
        staged = self._pinned(store, pending)
        if staged is not None:
            try:
                return self._verify_in_place(store, pending, staged)
            except PreconditionFailed:
                # A PUT landed on an expired URL's key later than `late_put` allows:
                # what the key holds now is verified the way that needs no such bound.
                logger.warning(
                    "staged upload %s changed while verified in place; verifying a copy",
                    pending.staging_key,
                    extra={"digest": pending.digest},
                )
        return self._verify_private_copy(store, pending)

    def _pinned(self, store: Store, pending: Pending) -> ObjectInfo | None:
        """The staged object, when nothing can change the bytes it names: a version of a
        versioned store, or an object no signed PUT can land on any more; else None."""
        assert pending.staging_key is not None
        staged = None
        if store.is_versioned():  # asked of the store once, not for each upload
            staged = store.head(pending.staging_key)
            if staged.version_id is not None:
                return staged
            # Written before versioning was enabled, or while it was suspended: the
            # next write replaces this version, which pins nothing.
        if not self._is_past_put_urls(pending):
            return None
        return staged if staged is not None else store.head(pending.staging_key)

    def _is_past_put_urls(self, pending: Pending) -> bool:
        """No signed PUT can land on the record's staging key any more: its URLs expired
        more than `late_put` seconds ago. Unknown (False) for a record that does not say
        when they expire (written before it was recorded)."""
        expires = pending.put_url_expires
        return expires is not None and self._clock() > expires + self._late_put

    def _verify_in_place(self, store: Store, pending: Pending, staged: ObjectInfo) -> str:
        """Verify the pinned staged object and copy exactly it: one server-side copy."""
        assert pending.staging_key is not None
        _refuse_unless_declared(pending, staged.size)  # refused without reading a byte
        # A version id pins the bytes by itself. Without one, the ETag condition turns
        # away a PUT landing later than `late_put` allows (bar an MD5 collision).
        if_match = staged.etag if staged.version_id is None else None
        pinned = {"if_match": if_match, "version_id": staged.version_id}
        with store.open(pending.staging_key, **pinned) as stream:
            hashed = hash_stream_read_ahead(stream)
        _refuse_unless_declared(pending, hashed.size, hashed.digest)
        return store.copy(pending.staging_key, blob_key(pending.digest), **pinned).etag

    def _verify_private_copy(self, store: Store, pending: Pending) -> str:
        """Copy the staged upload to a private key no signed URL can write to, verify
        that copy, then copy it into place: two server-side copies."""
        assert pending.staging_key is not None
        private = f"{VERIFYING}{pending.digest}/{secrets.token_urlsafe(12)}"
        store.copy(pending.staging_key, private)
        try:
            with store.open(private) as stream:
                hashed = hash_stream_read_ahead(stream)
            _refuse_unless_declared(pending, hashed.size, hashed.digest)
            return store.copy(private, blob_key(pending.digest)).etag
        finally:
            store.delete(private, every_version=True)

    def _indexed(
        self,
        existing: IndexObject | None,
        pending: Pending,
        uploads: tuple[Upload, ...],
        copy: _Copy,
        lost: Mapping[str, str | None],
        now: str,
    ) -> IndexObject | None:
        """The index object naming the verified `copy`; regions found without a copy
        (`lost`, with the ETag they were listed with) are no longer listed, unless copied
        again meanwhile. Verified now (a rebuild takes the time from the record written
        with it)."""
        if existing is None:
            return IndexObject(
                digest=pending.digest,
                size=pending.size,
                visibility=pending.visibility,  # type: ignore[arg-type]
                instances=(copy.region,),
                uploads=uploads,
                verified_at=now,
                updated_at=now,
                etags={copy.region: copy.etag},
            )
        if not _agrees(existing, pending):
            return existing
        gone = [
            region
            for region, etag in lost.items()
            if region in existing.instances and existing.etags.get(region) == etag
        ]
        remaining = existing.without_regions(gone)
        return remaining.with_copy(copy.region, copy.etag).with_changes(
            uploads=_with_uploads(existing, uploads),
            deleted=None,
            verified_at=now,  # verified again: every copy was lost, or it was deleted
            updated_at=now,
        )

    def _record_arrival(
        self, pending: Pending, batches: _BatchMessages, report: PassReport
    ) -> bool:
        """A batch named a file that is already stored and verified: note the batch (not a
        change of the file's state: ``updated_at`` stays)."""
        uploads = _uploads(pending, batches)

        def change(existing: IndexObject | None) -> IndexObject | None:
            if existing is None or _has_upload(existing, pending):
                return existing
            return existing.with_changes(uploads=_with_uploads(existing, uploads))

        recorded = update_index(self._index, pending.digest, change)
        self._on_index_written(pending.digest)
        report.recorded.append(pending.digest)
        if recorded is not None:
            # Regions configured since, or a pass killed before it copied the file.
            self._replicate(recorded, report)
        return True

    def _fail(
        self, pending: Pending, reason: str, report: PassReport, *, expired: bool = False
    ) -> bool:
        """Record why an upload was refused, where operators look."""
        found = read_index(self._index, pending.digest)
        if (
            found is not None
            and _has_upload(found[0], pending)
            and is_stored(self.regions, found[0])
        ):
            return True  # another indexer indexed this very upload meanwhile: no failure
        record = {
            "digest": pending.digest,
            "batch_id": pending.batch_id,
            "filename": ", ".join(pending.filenames),
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
        (report.expired if expired else report.failed).append(pending.digest)
        return True

    def _forget(self, pending: Pending) -> None:
        # The record first: it holds its uploader's quota, and a record whose bytes are
        # gone would wait until it expires (waiting records cost no store call). Staged
        # bytes a killed pass leaves behind are orphans, which the consistency check removes.
        self._index.delete(pending.key)
        if pending.staging_key is not None:
            self._upload_store(pending).delete(pending.staging_key, every_version=True)

    def _upload_store(self, pending: Pending) -> Store:
        return self.regions.get(pending.region, self._index)

    # -- consistency -------------------------------------------------------

    def check_consistency(self, report: PassReport) -> list[IndexObject]:
        """Every configured region holds a verified copy of every file the index lists, and
        the index lists only those (:mod:`indexer.consistency`); staged bytes no pending
        record names are removed. The index objects it read, as it read them."""
        checked: list[IndexObject] = []

        def reading() -> Iterator[IndexObject]:
            for index_object in self._each_index_object(report):
                checked.append(index_object)
                yield index_object

        repairs = self._consistency.run(reading())
        report.repaired.extend(repairs.repaired)
        report.replicated.extend(repairs.replicated)
        report.restored.extend(repairs.restored)
        report.reverified.extend(repairs.reverified)
        report.removed_blobs += repairs.removed_blobs
        report.malformed.extend(key for key in repairs.malformed if key not in report.malformed)
        report.removed_staging += self._remove_orphaned_staging()
        return checked

    def _remove_orphaned_staging(self) -> int:
        # Staging is listed before pending: a staged upload seen here whose
        # record is missing below was not written after the listing began.
        staged: list[tuple[Store, str]] = []
        for store in self._reachable():
            with self._unless_unreachable():
                staged.extend((store, info.key) for info in store.list(STAGING))
        named = {pending.staging_key for pending in self._pending()}
        removed = 0
        for store, key in staged:
            if key not in named and store.region not in self._outages:
                with self._unless_unreachable():
                    store.delete(key, every_version=True)
                    removed += 1
        # Private copies left by a killed pass; one another indexer is verifying
        # right now only makes it try again next pass.
        for store in self._reachable():
            with self._unless_unreachable():
                for info in store.list(VERIFYING):
                    store.delete(info.key, every_version=True)
                    removed += 1
        return removed

    def _reachable(self) -> list[Store]:
        """The regions not found unreachable this pass."""
        return [store for store in self.regions if store.region not in self._outages]

    @contextlib.contextmanager
    def _unless_unreachable(self) -> Iterator[None]:
        """Work in one region that stops (noted, for the rest of the pass) when the region
        cannot be reached; the index region's absence stops the pass."""
        try:
            yield
        except StoreUnavailable as exc:
            if exc.region == self._index.region:
                raise
            self._outages.note(exc)

    def _each_index_object(self, report: PassReport | None = None) -> Iterator[IndexObject]:
        """Every readable index object, each read when the iteration reaches it."""
        with self._progress.phase("index objects") as phase:
            for info in self._index.list(INDEX_PREFIX):
                phase.advance(1, info.size)
                digest = info.key.removeprefix(INDEX_PREFIX).removesuffix(".json")
                try:
                    found = read_index(self._index, digest)
                except (MalformedIndexObject, InvalidKey) as exc:  # set aside; the pass goes on
                    logger.error("skipping index object %s: %s", info.key, exc)
                    if report is not None and info.key not in report.malformed:
                        report.malformed.append(info.key)
                    continue
                if found is not None:
                    yield found[0]

    def failures(self) -> list[dict[str, object]]:
        """Uploads refused so far, for operators."""
        records = []
        for info in self._index.list(FAILURES):
            try:
                raw, _ = self._index.get(info.key)
                record = loads_strict(raw)
            except (ObjectNotFound, StrictJsonError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return sorted(
            records, key=lambda record: (str(record.get("at")), str(record.get("digest")))
        )


class _Refused(Exception):
    """The staged upload is not the declared file; the message says why."""


def _refuse_unless_declared(pending: Pending, size: int, digest: str | None = None) -> None:
    """Raise :class:`_Refused` unless `size` (and `digest`, once hashed) are the declared
    file's."""
    if size != pending.size:
        raise _Refused(f"size mismatch: expected {pending.size} bytes, received {size}")
    if digest is not None and digest != pending.digest:
        raise _Refused(f"sha512 mismatch: received bytes hash to {digest}")


@dataclass(frozen=True, slots=True)
class _Copy:
    """A verified copy of a file: its region and ETag."""

    region: str
    etag: str


def _configured_etags(
    index_object: IndexObject, configured: tuple[str, ...]
) -> dict[str, str | None]:
    """The configured regions the object lists, with the ETags it records for them."""
    return {
        region: index_object.etags.get(region)
        for region in index_object.instances
        if region in configured
    }


class _Staged:
    """The staged uploads of each region, listed once a pass (when first asked)."""

    def __init__(self) -> None:
        self._keys: dict[str, set[str]] = {}

    def holds(self, store: Store, key: str) -> bool:
        return key in self._listed(store)

    def digests(self, regions: Regions, outages: Outages) -> set[str]:
        """The digests with bytes staged in any region that answers (what waits in one
        that does not cannot be verified now anyway)."""
        found: set[str] = set()
        for store in regions:
            if store.region in outages:
                continue
            try:
                keys = self._listed(store)
            except StoreUnavailable as exc:
                outages.note(exc)
                continue
            found.update(key.removeprefix(STAGING).partition("/")[0] for key in keys)
        return found

    def _listed(self, store: Store) -> set[str]:
        keys = self._keys.get(store.region)
        if keys is None:
            keys = self._keys[store.region] = {info.key for info in store.list(STAGING)}
        return keys


class _BatchMessages:
    """The message and time of each batch a pass meets, read once from its batch record."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[int, tuple[str, str]] = {}

    def get(self, pending: Pending) -> tuple[str, str]:
        if pending.batch_id not in self._known:
            try:
                batch = read_batch(self._store, pending.batch_id)
            except MalformedRecord as exc:
                logger.error("batch record unreadable, indexing without its message: %s", exc)
                batch = None
            if batch is None:
                fallback = utc_timestamp(pending.created)
                self._known[pending.batch_id] = ("", fallback)
            else:
                self._known[pending.batch_id] = (batch.message, batch.uploaded)
        return self._known[pending.batch_id]


def _digest_of(pending_key: str) -> str:
    """The digest a pending record's key names (``…/<batch>/<digest>[-<size>].json``)."""
    return pending_key.rsplit("/", 1)[-1].removesuffix(".json").partition("-")[0]


def _awaits(pending_key: str, staged: set[str]) -> bool:
    """The record's upload has bytes to come (its key has their size) and none are staged."""
    name = pending_key.rsplit("/", 1)[-1].removesuffix(".json")
    return "-" in name and _digest_of(pending_key) not in staged


def _uploads(pending: Pending, batches: _BatchMessages) -> tuple[Upload, ...]:
    """The arrival a pending record makes: one a batch, under its first name, with the
    message's summary (a batch naming a file a thousand times is one arrival)."""
    message, uploaded = batches.get(pending)
    first = min(pending.filenames)
    # Client ids have no length limit of their own; an index object's author has one.
    author = pending.author[:MAX_AUTHOR]
    return (Upload(pending.batch_id, first, author, summary(message), uploaded),)


def _with_uploads(existing: IndexObject, uploads: tuple[Upload, ...]) -> tuple[Upload, ...]:
    return with_uploads(existing.uploads, uploads)


def _agrees(index_object: IndexObject, pending: Pending) -> bool:
    return index_object.visibility == pending.visibility and index_object.size == pending.size


def _has_upload(index_object: IndexObject, pending: Pending) -> bool:
    """The pending record's batch is recorded as an arrival of the file."""
    return any(upload.batch_id == pending.batch_id for upload in index_object.uploads)
