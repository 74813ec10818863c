"""What the browsable site shows, built from the index objects, the batches and the log.

One model a view: ``public`` holds only public files, and only the batches
and uploaders whose every file is public (a batch's message and author are
its files' too: a batch naming an internal file is not on the public site);
``internal`` holds everything. Everything is sorted, so the same sources make
the same site.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from indexer.intake import Batch
from indexer.schema import Tombstone, Upload
from indexer.site.sources import Event, FileSource

View = Literal["public", "internal"]
VIEWS: tuple[View, ...] = ("public", "internal")


def uploader_slug(author: str) -> str:
    """A path segment for an uploader (client ids hold any character)."""
    return hashlib.sha256(author.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SiteFile:
    digest: str
    size: int
    visibility: str
    filenames: tuple[str, ...]
    arrivals: tuple[Upload, ...]
    instances: tuple[str, ...]
    verified_at: str
    deleted: Tombstone | None
    history: tuple[Event, ...]

    @property
    def name(self) -> str:
        return self.filenames[0] if self.filenames else self.digest[:16]

    @property
    def latest(self) -> Upload | None:
        return self.arrivals[-1] if self.arrivals else None

    @property
    def is_downloadable(self) -> bool:
        return self.deleted is None and bool(self.instances)


@dataclass(frozen=True, slots=True)
class SiteBatch:
    id: int
    author: str
    uploaded: str
    message: str
    files: tuple[tuple[str, str, int], ...]  # (filename, digest, size), by filename


@dataclass(frozen=True, slots=True)
class Uploader:
    author: str
    slug: str
    batches: tuple[SiteBatch, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Month:
    month: str  # YYYY-MM
    stored_bytes: int  # bytes stored at the end of the month (files verified by then)
    uploads: int  # batches posted that month


@dataclass(frozen=True, slots=True)
class Site:
    view: View
    files: tuple[SiteFile, ...]  # newest first
    batches: tuple[SiteBatch, ...]  # newest first
    uploaders: tuple[Uploader, ...]  # by author
    months: tuple[Month, ...] = field(default=())

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files if file.is_downloadable)


class Memo:
    """What a build made of each file and batch, for the next build to take again when
    its sources are the same objects: a pass after a small change costs little more
    than sorting the files."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[FileSource, tuple[Event, ...], object, SiteFile]] = {}
        self._batches: dict[int, tuple[Batch, SiteBatch]] = {}

    def file(
        self, obj: FileSource, history: tuple[Event, ...], batch_ids: set[int] | None
    ) -> SiteFile:
        shown = None if batch_ids is None else tuple(u.batch_id in batch_ids for u in obj.uploads)
        known = self._files.get(obj.digest)
        if known is not None and known[0] is obj and known[1] is history and known[2] == shown:
            return known[3]
        made = _file(obj, history, batch_ids)
        self._files[obj.digest] = (obj, history, shown, made)
        return made

    def batch(self, batch: Batch) -> SiteBatch:
        known = self._batches.get(batch.id)
        if known is not None and known[0] is batch:
            return known[1]
        made = _batch(batch)
        self._batches[batch.id] = (batch, made)
        return made

    def keep_only(self, digests: Collection[str], batch_ids: Collection[int]) -> None:
        """Forget what was made of files and batches no longer in the sources."""
        for digest in self._files.keys() - set(digests):
            del self._files[digest]
        for batch_id in self._batches.keys() - set(batch_ids):
            del self._batches[batch_id]


def build(
    view: View,
    sources: Iterable[FileSource],
    batches: Iterable[Batch],
    history: Mapping[str, tuple[Event, ...]],
    *,
    memo: Memo | None = None,
) -> Site:
    """The `view`'s site: files newest first, batches newest first, uploaders by name."""
    memo = memo if memo is not None else Memo()
    objects = list(sources)
    visibility = {obj.digest: obj.visibility for obj in objects}
    shown = [
        memo.batch(batch)
        for batch in sorted(batches, key=lambda batch: batch.id)
        if view == "internal" or _is_public(batch, visibility)
    ]
    # On the public site a file shows only what public batches say of it: a batch that
    # also named an internal file keeps its author and message to the internal view.
    batch_ids = None if view == "internal" else {batch.id for batch in shown}
    files = [
        memo.file(obj, history.get(obj.digest, ()), batch_ids)
        for obj in objects
        if view == "internal" or obj.visibility == "public"
    ]
    files.sort(key=lambda file: (file.verified_at, file.digest), reverse=True)
    shown.sort(key=lambda batch: batch.id, reverse=True)
    by_author: dict[str, list[SiteBatch]] = defaultdict(list)
    for batch in shown:
        by_author[batch.author].append(batch)
    uploaders = tuple(
        Uploader(author, uploader_slug(author), tuple(found))
        for author, found in sorted(by_author.items())
    )
    return Site(view, tuple(files), tuple(shown), uploaders, _months(files, shown))


def _is_public(batch: Batch, visibility: Mapping[str, str]) -> bool:
    """Every file of the batch is public now (what it was declared as, until indexed)."""
    return all(
        visibility.get(entry.digest, entry.visibility) == "public" for entry in batch.files.values()
    )


def _file(obj: FileSource, history: tuple[Event, ...], batch_ids: set[int] | None) -> SiteFile:
    arrivals = tuple(
        upload
        for upload in obj.uploads
        if batch_ids is None or upload.batch_id is None or upload.batch_id in batch_ids
    )
    # Verifications name uploaders: only the internal view shows them.
    kinds = (
        ("visibility", "delete") if batch_ids is not None else ("visibility", "delete", "verified")
    )
    return SiteFile(
        digest=obj.digest,
        size=obj.size,
        visibility=obj.visibility,
        # A public file's names are public, whatever batch named it.
        filenames=tuple(sorted({upload.filename for upload in obj.uploads})),
        arrivals=arrivals,
        instances=tuple(sorted(obj.instances)),
        verified_at=obj.verified_at,
        deleted=obj.deleted,
        history=tuple(event for event in history if event.event in kinds),
    )


def _batch(batch: Batch) -> SiteBatch:
    return SiteBatch(
        id=batch.id,
        author=batch.author,
        uploaded=batch.uploaded,
        message=batch.message,
        files=tuple(
            (name, entry.digest, entry.size) for name, entry in sorted(batch.files.items())
        ),
    )


def _months(files: list[SiteFile], batches: list[SiteBatch]) -> tuple[Month, ...]:
    """Bytes stored (files verified by the end of each month) and batches posted, by
    month, from the first to the last month anything happened."""
    added: dict[str, int] = defaultdict(int)
    for file in files:
        if file.is_downloadable:
            added[file.verified_at[:7]] += file.size
    posted: dict[str, int] = defaultdict(int)
    for batch in batches:
        posted[batch.uploaded[:7]] += 1
    months = sorted(added.keys() | posted.keys())
    if not months:
        return ()
    result: list[Month] = []
    stored = 0
    for month in _month_range(months[0], months[-1]):
        stored += added.get(month, 0)
        result.append(Month(month, stored, posted.get(month, 0)))
    return tuple(result)


def _month_range(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    months: list[str] = []
    while f"{year:04d}-{month:02d}" <= last and len(months) < 1200:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
