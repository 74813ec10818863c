"""What the site is made of, kept in the store and brought up to date from the change feed.

The site shows, of each file, what its index object says and its audit
history. Reading every index object and the whole audit log for every pass
would grow with the store, so the renderer keeps its own copy, sharded like
the catalog: ``site/state/files/<abc>.json`` holds, for each digest starting
with ``abc``, the fields the pages show and the file's events. The batches
come from the catalog's batch shards. ``site/state/position.json`` names the
feed entry and the audit record the copy reflects.

Following reads the feed entries and audit records after the position, then
only what they name: the catalog shards (a file whose entry changed, or that
a new or changed batch names, or that has new events, is read again from its
index object) and the state shards of those files. A pass with nothing new
reads two absent objects and writes nothing.

An audit record is appended before the write it describes lands: a file
named by a record whose write lands after the file was read is read again
when the feed announces its shard (the position keeps the digests of the
last records followed for that).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from indexer.audit import AuditLog, AuditRecord
from indexer.catalog import BATCHES_PER_SHARD, CATALOG_PREFIX, Catalog, file_shard, shard_of_key
from indexer.feed import FeedGap
from indexer.index import read_index, readable_index_objects
from indexer.intake import Batch, BatchFile
from indexer.schema import IndexObject, MalformedIndexObject, Tombstone, Upload
from indexer.stores import ObjectNotFound, Store
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

STATE_PREFIX = "site/state/"
FILES_PREFIX = f"{STATE_PREFIX}files/"
POSITION_KEY = f"{STATE_PREFIX}position.json"
SHOWN_EVENTS = ("verified", "visibility", "delete")  # what a file page's history tells
WRITERS = 8  # state shards written at once
MAX_FOLLOWED = 5000  # feed entries or records followed in one pass; further behind, rebuild


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a file's history, as its page tells it."""

    seq: int
    at: str
    event: str
    who: str
    why: str
    to: str | None = None  # the visibility a visibility change set

    @classmethod
    def of(cls, record: AuditRecord) -> Event:
        to = record.details.get("to") if record.event == "visibility" else None
        return cls(record.seq, record.at, record.event, record.who, record.why, _text(to))


@dataclass(frozen=True, slots=True)
class FileSource:
    """A file as the site shows it: the fields of its index object the pages use."""

    digest: str
    size: int
    visibility: str
    instances: tuple[str, ...]
    uploads: tuple[Upload, ...]
    verified_at: str
    deleted: Tombstone | None

    @classmethod
    def of(cls, obj: IndexObject) -> FileSource:
        return cls(
            obj.digest,
            obj.size,
            obj.visibility,
            tuple(sorted(obj.instances)),
            obj.uploads,
            obj.verified_at,
            obj.deleted,
        )


@dataclass
class Position:
    """The feed entry and audit record the copy reflects, and which process wrote it."""

    feed: int = 0
    audit: int = 0
    recent: tuple[str, ...] = ()  # digests of the records followed last
    writer: str = ""


@dataclass
class Changes:
    """What one follow found changed: the files whose pages may differ, the batches."""

    digests: set[str] = field(default_factory=set)
    batch_ids: set[int] = field(default_factory=set)
    everything: bool = False  # the copy was rebuilt: any page may differ
    loaded: bool = False  # the copy was read from the store (another process saved it)

    def __bool__(self) -> bool:
        return self.everything or bool(self.digests or self.batch_ids)


class SiteSources:
    """The renderer's copy of what the site shows, for one store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._catalog = Catalog(store)
        self._log = AuditLog(store)
        self.files: dict[str, FileSource] = {}
        self.history: dict[str, tuple[Event, ...]] = {}  # by digest, oldest first
        self.batches: dict[int, Batch] = {}
        self._members: dict[str, set[str]] = defaultdict(set)  # shard -> its digests
        self.position: Position | None = None  # what was last loaded or saved
        self.writer = secrets.token_hex(8)  # this process, in the positions it saves
        self._stored: Position | None = None  # the position last read from or saved

    # -- bringing the copy up to date --------------------------------------

    def follow(self) -> Changes:
        """Apply what changed since the copy's position: load the copy first when this
        process has none (or another process saved one since), rebuild it when it is
        missing, unreadable or too far behind. Writes only the state shards that
        changed; the position is the caller's to save (:meth:`save_position`) once the
        pages show the changes."""
        stored = self._stored_position()
        if stored is None:
            return self.rebuild()
        loaded = False
        if stored != self.position:
            if not self._load(stored):
                return self.rebuild()
            loaded = True
        try:
            changes = self._follow(stored)
        except FeedGap as exc:
            logger.warning("the site's sources are read again from the index: %s", exc)
            return self.rebuild()
        changes.loaded = loaded
        return changes

    def rebuild(self) -> Changes:
        """The copy made again from every index object, the whole audit log and the
        catalog's batch shards (what ``tooltool-indexer rebuild`` and a first pass do)."""
        feed = self._catalog.feed.head()
        events: dict[str, list[Event]] = defaultdict(list)
        audit = 0
        for record in self._log.records():
            if isinstance(record, str):
                continue
            audit = max(audit, record.seq)
            if record.digest is not None and record.event in SHOWN_EVENTS:
                events[record.digest].append(Event.of(record))
        batches = self._all_batches()
        files = {obj.digest: FileSource.of(obj) for obj in readable_index_objects(self._store)}
        history = {digest: _sorted(found) for digest, found in sorted(events.items())}
        self._take(files, history, batches)
        written = set(self._members)
        self._save_shards(written)
        for info in self._store.list(FILES_PREFIX):
            shard = "files/" + info.key.removeprefix(FILES_PREFIX).removesuffix(".json")
            if shard not in written:
                self._store.delete(info.key)
        self.position = Position(feed, audit, (), self.writer)
        return Changes(everything=True)

    def save_position(self) -> None:
        """Record that the site shows the copy as it is."""
        if self.position is None or self.position == self._stored:
            return
        if self._stored is not None and _same_place(self.position, self._stored):
            return
        self.position = replace(self.position, writer=self.writer)
        data = json.dumps(asdict(self.position), sort_keys=True).encode()
        self._store.put(POSITION_KEY, data, content_type="application/json")
        self._stored = self.position

    def _follow(self, position: Position) -> Changes:
        changes = Changes()
        touched: set[str] = set()
        seq = position.feed
        for _ in range(MAX_FOLLOWED):
            change = self._catalog.feed.read(seq + 1)
            if change is None:
                break
            seq = change.seq
            touched.update(change.shards)
        else:
            raise FeedGap(f"over {MAX_FOLLOWED} feed entries behind")
        audit = position.audit
        recent: set[str] = set()
        new_events: dict[str, list[Event]] = defaultdict(list)
        for count, record in enumerate(self._log.records_after(position.audit)):
            if count == MAX_FOLLOWED:
                raise FeedGap(f"over {MAX_FOLLOWED} audit records behind")
            audit += 1  # records_after yields each record in turn, unreadable ones as keys
            if isinstance(record, str) or record.digest is None:
                continue
            recent.add(record.digest)
            if record.event in SHOWN_EVENTS:
                new_events[record.digest].append(Event.of(record))
        reread = set(recent)
        for shard in sorted(touched):
            if shard.startswith("batches/"):
                changes.batch_ids.update(self._apply_batch_shard(shard, reread))
            else:
                reread.update(self._changed_in(shard, set(position.recent)))
        for digest, found in new_events.items():
            self.history[digest] = _sorted([*self.history.get(digest, ()), *found])
            self._members[file_shard(digest)].add(digest)
        changes.digests.update(new_events)
        for digest in sorted(reread):
            if self._reread(digest):
                changes.digests.add(digest)
        self._save_shards({file_shard(digest) for digest in changes.digests})
        self.position = Position(seq, audit, tuple(sorted(recent)), position.writer)
        return changes

    def _apply_batch_shard(self, shard: str, reread: set[str]) -> set[int]:
        """Take the batch shard's batches; the ids that changed (their files are read
        again: a batch that appears or changes can change what its files show)."""
        number = int(shard.removeprefix("batches/"))
        fresh = self._batch_shard(shard)
        changed = set()
        for batch_id in range(number * BATCHES_PER_SHARD, (number + 1) * BATCHES_PER_SHARD):
            old, new = self.batches.get(batch_id), fresh.get(batch_id)
            if old == new:
                continue
            changed.add(batch_id)
            for batch in (old, new):
                if batch is not None:
                    reread.update(entry.digest for entry in batch.files.values())
            if new is None:
                del self.batches[batch_id]
            else:
                self.batches[batch_id] = new
        return changed

    def _changed_in(self, shard: str, suspects: set[str]) -> set[str]:
        """The digests of a file shard whose catalog entry differs from the copy, and
        those named by the records followed last (their writes may have landed since)."""
        entries = {entry["digest"]: entry for entry in self._catalog.shard(shard)}
        prefix = shard.removeprefix("files/")
        changed = {digest for digest in suspects if digest.startswith(prefix)}
        known = {digest for digest in self._members.get(shard, ()) if digest in self.files}
        for digest in entries.keys() | known:
            entry, source = entries.get(digest), self.files.get(digest)
            if entry is None or source is None or _differs(entry, source):
                changed.add(digest)
        return changed

    def _reread(self, digest: str) -> bool:
        """Read the file's index object again; whether what the site shows of it changed
        (an unreadable one leaves what the copy had)."""
        try:
            found = read_index(self._store, digest)
        except MalformedIndexObject as exc:
            logger.error("the site keeps what it showed of %s: %s", digest, exc)
            return False
        old = self.files.get(digest)
        new = None if found is None else FileSource.of(found[0])
        if new == old:
            return False
        if new is None:
            del self.files[digest]
        else:
            self.files[digest] = new
            self._members[file_shard(digest)].add(digest)
        return True

    # -- the copy in the store ---------------------------------------------

    def _stored_position(self) -> Position | None:
        try:
            raw, _ = self._store.get(POSITION_KEY)
            data = loads_strict(raw)
            position: Position | None = Position(
                feed=int(data["feed"]),
                audit=int(data["audit"]),
                recent=tuple(str(digest) for digest in data["recent"]),
                writer=str(data["writer"]),
            )
        except ObjectNotFound:
            position = None
        except (StrictJsonError, KeyError, TypeError, ValueError):
            logger.error("%s is unreadable: the site's sources are read again", POSITION_KEY)
            position = None
        self._stored = position
        return position

    def _load(self, position: Position) -> bool:
        """Load the copy the store holds; False when a shard of it cannot be read."""
        files: dict[str, FileSource] = {}
        history: dict[str, tuple[Event, ...]] = {}
        for info in self._store.list(FILES_PREFIX):
            try:
                raw, _ = self._store.get(info.key)
                for digest, entry in loads_strict(raw).items():
                    if entry["file"] is not None:
                        files[digest] = _file(entry["file"])
                    if entry["history"]:
                        history[digest] = tuple(Event(**event) for event in entry["history"])
            except ObjectNotFound:
                continue
            except (StrictJsonError, KeyError, TypeError, ValueError, AttributeError):
                logger.error("%s is unreadable: the site's sources are read again", info.key)
                return False
        batches = self._all_batches()
        self._take(files, history, batches)
        self.position = position
        return True

    def _take(
        self,
        files: dict[str, FileSource],
        history: dict[str, tuple[Event, ...]],
        batches: dict[int, Batch],
    ) -> None:
        self.files, self.history, self.batches = files, history, batches
        self._members = defaultdict(set)
        for digest in files.keys() | history.keys():
            self._members[file_shard(digest)].add(digest)

    def _save_shards(self, shards: Iterable[str]) -> None:
        """Write these state shards, several at a time."""
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            for _ in pool.map(self._save_shard, sorted(shards)):
                pass

    def _save_shard(self, shard: str) -> None:
        digests = sorted(
            digest
            for digest in self._members.get(shard, ())
            if digest in self.files or digest in self.history
        )
        key = f"{FILES_PREFIX}{shard.removeprefix('files/')}.json"
        if not digests:
            self._store.delete(key)
            return
        data = {
            digest: {
                "file": None if digest not in self.files else asdict(self.files[digest]),
                "history": [asdict(event) for event in self.history.get(digest, ())],
            }
            for digest in digests
        }
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._store.put(key, raw.encode("utf-8"), content_type="application/json")

    def _all_batches(self) -> dict[int, Batch]:
        batches: dict[int, Batch] = {}
        for info in self._store.list(f"{CATALOG_PREFIX}batches/"):
            shard = shard_of_key(info.key)
            if shard is not None:
                batches.update(self._batch_shard(shard))
        return batches

    def _batch_shard(self, shard: str) -> dict[int, Batch]:
        batches = {}
        for entry in self._catalog.shard(shard):
            try:
                files = {
                    name: BatchFile(
                        size=file["size"],
                        digest=file["digest"],
                        algorithm=file["algorithm"],
                        visibility=file["visibility"],
                    )
                    for name, file in entry["files"].items()
                }
                batch = Batch(
                    id=entry["id"],
                    author=entry["author"],
                    uploaded=entry["uploaded"],
                    message=entry["message"],
                    region="",
                    files=files,
                )
            except (KeyError, TypeError, AttributeError):
                logger.error("the site leaves out a malformed entry of %s", shard)
                continue
            batches[batch.id] = batch
        return batches


def _same_place(one: Position, other: Position) -> bool:
    return (one.feed, one.audit, one.recent) == (other.feed, other.audit, other.recent)


def _sorted(events: Iterable[Event]) -> tuple[Event, ...]:
    return tuple(sorted(set(events), key=lambda event: event.seq))


def _differs(entry: dict[str, Any], source: FileSource) -> bool:
    """Whether a catalog entry tells of a change the copy has not seen."""
    return (
        entry.get("visibility") != source.visibility
        or entry.get("size") != source.size
        or tuple(entry.get("instances", ())) != source.instances
        or sorted(entry.get("filenames", ())) != sorted({u.filename for u in source.uploads})
    )


def _file(data: dict[str, Any]) -> FileSource:
    deleted = data["deleted"]
    return FileSource(
        digest=data["digest"],
        size=data["size"],
        visibility=data["visibility"],
        instances=tuple(data["instances"]),
        uploads=tuple(Upload(**upload) for upload in data["uploads"]),
        verified_at=data["verified_at"],
        deleted=None
        if deleted is None
        else Tombstone(**{**deleted, "regions": tuple(deleted["regions"])}),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
