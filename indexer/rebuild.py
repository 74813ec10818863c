"""``tooltool-indexer rebuild``: every index object and the whole catalog, from the sources.

The sources of truth are the blobs (``sha512/<digest>`` in each region), the
batch records, the pending and failure records (which batches' files were
refused, or are not done yet) and the audit log. Everything under ``index/``
and ``catalog/`` is derived from them; a rebuild from nothing writes the same
bytes the indexer wrote as it went. For one digest:

- ``visibility``: the last visibility change in the log, else the visibility
  the file was verified or imported with, else its first batch's;
- ``size``: what it was verified or imported at, else its first batch's;
- ``uploads``: the batches naming it at that size whose upload was not
  refused and is not pending (or is logged as verified: a pass killed before it
  forgot the pending record), in batch order (first and latest 50);
- ``verified_at``: the last verification in the log (an upload is verified
  only when no copy is left), or the import that first stored it (or stored it
  again after a deletion); ``updated_at``: the time of the last event in the log
  (verification, import, visibility change, deletion), whose write landed last;
- ``deleted``: the last deletion, unless a verification or import came after;
- ``instances`` and ``etags``: the configured regions holding the file's bytes,
  with their copies' ETags (none when deleted). A copy the index object already
  lists with that ETag was verified when it was listed; any other copy of the
  right size is hashed first (``hashed_bytes`` in the summary), so a rebuild
  never lists bytes nobody verified.

A blob no batch and no log record explains (bytes put into a bucket by hand)
is left out and counted as ``unexplained``. Before an object is rewritten, the
log records written since the rebuild read it are read too: a management
change or an import made meanwhile (each records itself first) is kept.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer.audit import LOG_PREFIX, AuditLog, AuditRecord
from indexer.catalog import Catalog
from indexer.digests import is_valid_digest
from indexer.index import read_index, readable_index_objects, update_index
from indexer.intake import FAILURES, PENDING, Batch, BatchFile
from indexer.progress import QUIET, Progress
from indexer.replication import hash_copy
from indexer.schema import (
    IndexObject,
    MalformedIndexObject,
    Tombstone,
    Upload,
    blob_key,
    index_key,
    summary,
    with_uploads,
)
from indexer.stores import ObjectInfo, ObjectNotFound, PreconditionFailed, Regions

logger = logging.getLogger(__name__)

FILE_EVENTS = ("verified", "import", "visibility", "delete")
BLOBS = "sha512/"


@dataclass
class RebuildReport:
    """What a rebuild found and wrote."""

    derived: int = 0
    written: int = 0
    unexplained: int = 0
    unreadable: int = 0
    shards_written: int = 0
    blobs: int = 0
    bytes: int = 0
    hashed_bytes: int = 0

    def count_unreadable(self, key: str) -> None:
        self.unreadable += 1

    @property
    def is_partial(self) -> bool:
        """A source could not be read: what depends on it may be missing."""
        return self.unreadable > 0

    def summary(self) -> dict[str, int]:
        return {
            "derived": self.derived,
            "written": self.written,
            "unexplained": self.unexplained,
            "unreadable": self.unreadable,
            "shards_written": self.shards_written,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "hashed_bytes": self.hashed_bytes,
        }


@dataclass
class _Sources:
    """What the sources say, by digest."""

    blobs: dict[str, dict[str, ObjectInfo]] = field(default_factory=lambda: defaultdict(dict))
    events: dict[str, list[AuditRecord]] = field(default_factory=lambda: defaultdict(list))
    arrivals: dict[str, list[tuple[Batch, str, BatchFile]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    batches: list[Batch] = field(default_factory=list)
    logged_batches: set[int] = field(default_factory=set)  # batches the log has a record of
    log_seq: int = 0  # the last audit record read

    def add(self, record: AuditRecord | str, report: RebuildReport) -> None:
        if isinstance(record, str):
            logger.error("unreadable audit record %s", record)
            report.unreadable += 1
            name = record.removeprefix(LOG_PREFIX).removesuffix(".json")
            if name.isdigit():
                self.log_seq = max(self.log_seq, int(name))
            return
        self.log_seq = max(self.log_seq, record.seq)
        if record.event in FILE_EVENTS and record.digest is not None:
            self.events[record.digest].append(record)
        elif record.event == "batch" and record.batch_id is not None:
            self.logged_batches.add(record.batch_id)

    def verified_uploads(self) -> set[tuple[str, int]]:
        """(digest, batch id) of the uploads the log records as verified: done, even when
        their pending record is still there (a pass killed before it forgot it)."""
        return {
            (digest, event.batch_id)
            for digest, events in self.events.items()
            for event in events
            if event.event == "verified" and event.batch_id is not None
        }

    def catch_up(self, log: AuditLog, report: RebuildReport) -> None:
        """Read the records written since: a change a live writer (a management request,
        an import) made while the rebuild ran is in them, and is kept."""
        for record in log.records_after(self.log_seq):
            self.add(record, report)

    def derive(
        self, digest: str, configured: tuple[str, ...], is_good: GoodCopy
    ) -> IndexObject | None:
        return derive(
            digest,
            self.blobs.get(digest, {}),
            self.events.get(digest, []),
            self.arrivals.get(digest, []),
            configured,
            is_good,
        )


GoodCopy = Callable[[str, ObjectInfo], bool]


class _Copies:
    """Which listed copies of one digest hold its bytes: a copy the index object already
    names with that ETag was verified when it was listed; any other is hashed, once."""

    def __init__(
        self, regions: Regions, digest: str, known: Mapping[str, str], report: RebuildReport
    ) -> None:
        self._regions = regions
        self._digest = digest
        self._known = known
        self._report = report
        self._verdicts: dict[tuple[str, str], bool] = {}

    def __call__(self, region: str, info: ObjectInfo) -> bool:
        if self._known.get(region) == info.etag:
            return True
        verdict = self._verdicts.get((region, info.etag))
        if verdict is None:
            verdict = self._verdicts[(region, info.etag)] = self._hashes_right(region, info)
        return verdict

    def _hashes_right(self, region: str, info: ObjectInfo) -> bool:
        try:
            hashed = hash_copy(self._regions[region], blob_key(self._digest), etag=info.etag)
        except (ObjectNotFound, PreconditionFailed):
            return False  # gone or changed since the listing: not listed
        self._report.hashed_bytes += hashed.size
        if hashed.digest != self._digest or hashed.size != info.size:
            logger.error(
                "a copy does not hold the file's bytes: left out",
                extra={"digest": self._digest, "region": region},
            )
            return False
        return True


def rebuild(regions: Regions, *, progress: Progress = QUIET) -> RebuildReport:
    """Rewrite every index object and catalog shard that differs from what the sources say."""
    report = RebuildReport()
    sources = _read_sources(regions, report, progress)
    if report.is_partial:
        logger.error(
            "%d sources unreadable: index objects that exist are left as they are, only "
            "missing ones are written",
            report.unreadable,
        )
    objects = []
    digests = sorted(sources.blobs.keys() | sources.events.keys())
    with progress.phase("index objects", total=len(digests)) as phase:
        for digest in digests:
            phase.advance()
            found = _existing(regions, digest)
            known = found.etags if found is not None else {}
            is_good = _Copies(regions, digest, known, report)
            derived = sources.derive(digest, regions.names, is_good)
            if derived is None:
                report.unexplained += 1
                logger.warning(
                    "no batch or log record explains this blob", extra={"digest": digest}
                )
                continue
            report.derived += 1
            try:
                objects.append(_write(regions, sources, derived, found, is_good, report))
            except MalformedIndexObject as exc:  # a source no schema allows, set aside
                logger.error("not rebuilt: %s", exc, extra={"digest": digest})
                report.unreadable += 1
                if found is not None:
                    objects.append(found)
    with progress.phase("catalog") as phase:
        derived_digests = {obj.digest for obj in objects}
        objects.extend(readable_index_objects(regions.index, skip=derived_digests))
        report.shards_written = Catalog(regions.index).rebuild(objects, sources.batches)
        phase.advance(report.shards_written)
    return report


def derive(
    digest: str,
    blobs: dict[str, ObjectInfo],
    events: list[AuditRecord],
    arrivals: list[tuple[Batch, str, BatchFile]],
    configured: tuple[str, ...],
    is_good: GoodCopy = lambda region, info: True,
) -> IndexObject | None:
    """The digest's index object as its sources say it, or None when they say nothing;
    `is_good` tells whether a listed copy of the right size holds the bytes."""
    stored = [event for event in events if event.event in ("verified", "import")]
    size = _first_int(event.details.get("size") for event in reversed(stored))
    if size is None:
        size = arrivals[0][2].size if arrivals else None
    if size is None:
        return None
    visibility = _visibility(events, arrivals)
    if visibility is None:
        return None
    uploads = with_uploads(
        (),
        [
            Upload(batch.id, name, batch.author[:1024], summary(batch.message), batch.uploaded)
            for batch, name, entry in arrivals
            if entry.size == size
        ],
    )
    verified_at: str | None = None
    updated_at: str | None = None
    deleted: Tombstone | None = None
    for event in events:
        if event.event == "verified" or (
            event.event == "import" and (verified_at is None or deleted is not None)
        ):
            verified_at, deleted = event.at, None
        elif event.event == "delete":
            regions = event.details.get("regions", [])
            deleted = Tombstone(
                by=event.who[:1024],
                at=event.at,
                reason=event.why,
                regions=tuple(region for region in regions if isinstance(region, str)),
            )
        updated_at = event.at  # the last in the log is the write that landed last
    if verified_at is None:
        if not uploads:
            return None
        verified_at = uploads[0].uploaded
    instances = (
        ()
        if deleted is not None
        else tuple(
            region
            for region in sorted(configured)
            if region in blobs and blobs[region].size == size and is_good(region, blobs[region])
        )
    )
    return IndexObject(
        digest=digest,
        size=size,
        visibility=visibility,  # type: ignore[arg-type]
        instances=instances,
        uploads=uploads,
        verified_at=verified_at,
        updated_at=updated_at or verified_at,
        deleted=deleted,
        etags={region: blobs[region].etag for region in instances},
    )


def _visibility(
    events: list[AuditRecord], arrivals: list[tuple[Batch, str, BatchFile]]
) -> str | None:
    for event in reversed(events):
        if event.event == "visibility" and event.details.get("to") in ("public", "internal"):
            return str(event.details["to"])
    for event in events:
        if event.event in ("verified", "import"):
            visibility = event.details.get("visibility")
            if visibility in ("public", "internal"):
                return str(visibility)
    return arrivals[0][2].visibility if arrivals else None


def _first_int(values: Any) -> int | None:
    for value in values:
        if type(value) is int and value >= 0:
            return value
    return None


def _read_sources(regions: Regions, report: RebuildReport, progress: Progress) -> _Sources:
    sources = _Sources()
    for store in regions:
        with progress.phase(f"blobs in {store.region}") as phase:
            for info in store.list(BLOBS):
                digest = info.key.removeprefix(BLOBS)
                if is_valid_digest(digest):
                    sources.blobs[digest][store.region] = info
                    report.blobs += 1
                    report.bytes += info.size
                    phase.advance(1, info.size)
    with progress.phase("audit log") as phase:
        for record in AuditLog(regions.index).records():
            phase.advance()
            sources.add(record, report)
    unfinished = _unfinished(regions, done=sources.verified_uploads())
    with progress.phase("batch records") as phase:
        sources.batches = Catalog(regions.index).batch_records(on_error=report.count_unreadable)
        for batch in sorted(sources.batches, key=lambda batch: batch.id):
            phase.advance()
            if batch.id not in sources.logged_batches:
                continue  # its POST did not finish (its record comes after its uploads')
            names: dict[str, list[str]] = defaultdict(list)
            for name, entry in batch.files.items():
                names[entry.digest].append(name)
            for digest, found in names.items():
                if (digest, batch.id) not in unfinished:
                    first = min(found)
                    sources.arrivals[digest].append((batch, first, batch.files[first]))
    return sources


def _unfinished(regions: Regions, *, done: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """(digest, batch id) of the uploads refused or not done yet, from their record keys:
    ``intake/failures/<digest>/<batch>.json``, ``intake/pending/<owner>/<batch>/<digest>…``.
    A pending record of an upload `done` (verified, says the log) is what a pass killed
    before it forgot the record left: not an upload still to come."""
    found = set()
    for info in regions.index.list(FAILURES):
        parts = info.key.removeprefix(FAILURES).removesuffix(".json").split("/")
        if len(parts) == 2 and parts[1].isdigit():
            found.add((parts[0], int(parts[1])))
    for info in regions.index.list(PENDING):
        parts = info.key.removeprefix(PENDING).removesuffix(".json").split("/")
        if len(parts) == 3 and parts[1].isdigit():
            upload = (parts[2].partition("-")[0], int(parts[1]))
            if upload not in done:
                found.add(upload)
    return found


def _existing(regions: Regions, digest: str) -> IndexObject | None:
    """The digest's index object now; a malformed one is deleted, to be replaced by what
    the sources say."""
    try:
        found = read_index(regions.index, digest)
    except MalformedIndexObject:
        regions.index.delete(index_key(digest))
        return None
    return found[0] if found is not None else None


def _write(
    regions: Regions,
    sources: _Sources,
    derived: IndexObject,
    found: IndexObject | None,
    is_good: GoodCopy,
    report: RebuildReport,
) -> IndexObject:
    """Write `derived` where the index object differs, as the log says it last.

    The write is a compare-and-swap on the object read: one a live writer changed
    meanwhile (a PATCH, an import: each records itself first) is derived again with
    the log's newer records. With a source unreadable, an existing object is left as
    it is (nothing the log cannot vouch for is undone: a visibility change, say), and
    a missing one is written internal (an operator makes it public again).
    """
    if found == derived:
        return derived
    if found is None and report.is_partial:
        # An unreadable record may have made it internal: never published on a guess.
        derived = derived.with_changes(visibility="internal")
    latest = derived
    log = AuditLog(regions.index)

    def change(existing: IndexObject | None) -> IndexObject | None:
        nonlocal latest
        if existing is not None and report.is_partial:
            return existing
        # The log again, after the object was read (one read when nothing is new): a
        # change that landed since the rebuild read the log is derived too, not undone.
        sources.catch_up(log, report)
        latest = sources.derive(derived.digest, regions.names, is_good) or derived
        if report.is_partial:
            latest = latest.with_changes(visibility="internal")
        return latest

    written = update_index(regions.index, derived.digest, change)
    assert written is not None
    if written != found:
        report.written += 1
    return written
