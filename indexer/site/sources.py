"""What the site is made of, kept in the store and brought up to date from the change feed.

The site shows, of each file, what its index object says and its audit
history, and the batches. Reading every index object and the whole audit log
for every pass would grow with the store, so the renderer keeps its own copy,
sharded like the catalog:

- ``site/state/files/<abc>.json``: for each digest starting with ``abc``, the
  fields the pages show and the file's events;
- ``site/state/batches/<n>.json``: the catalog's batch shard ``n`` as the
  site last showed it;
- ``site/state/position.json``: the feed entry and the audit record the copy
  reflects, the shards it is made of, and the files to read again.

The copy in the store is always what the published site shows: a pass
follows into memory, publishes, and only then saves the shards that changed
and the position (a pass that fails drops its copy; the next loads the saved
one). A process that loads the copy therefore knows what every page shows
without rendering any.

Following reads the feed entries and audit records after the position, then
only what they name: the catalog shards (a file whose entry changed, or that
a new or changed batch names, or that has new events, is read again from its
index object). Two writes can land after the follow that named them: an audit
record is appended before its index write, and a batch naming a stored file
is posted before the indexer records the arrival. Such files stay "pending"
in the position, read again each pass until their index object shows the
write (or a while has passed). A pass with nothing new reads five small
objects and writes nothing.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from indexer.audit import AuditLog, AuditRecord
from indexer.catalog import BATCHES_PER_SHARD, CATALOG_PREFIX, Catalog, file_shard
from indexer.feed import FeedGap
from indexer.index import read_index, readable_index_objects
from indexer.intake import Batch, BatchFile
from indexer.schema import IndexObject, MalformedIndexObject, Tombstone, Upload, utc_timestamp
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, put_over
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

STATE_PREFIX = "site/state/"
FILES_PREFIX = f"{STATE_PREFIX}files/"
BATCHES_PREFIX = f"{STATE_PREFIX}batches/"
POSITION_KEY = f"{STATE_PREFIX}position.json"
SHOWN_EVENTS = ("verified", "visibility", "delete")  # what a file page's history tells
WRITERS = 8  # state shards read or written at once
MAX_FOLLOWED = 5000  # feed entries or records followed in one pass; further behind, rebuild
RECORD_WAIT = 600  # seconds a record's write may take to land
ARRIVAL_WAIT = 86400  # seconds a batch naming a stored file may wait for its arrival
MAX_PENDING = 10_000


class StaleCopy(Exception):
    """The copy cannot be followed from where it is: make it again."""


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


@dataclass(frozen=True, slots=True)
class Pending:
    """A file to read again until its index object shows a write that may land late."""

    after: str = ""  # the time of a record whose write the object must show
    batches: tuple[int, ...] = ()  # batches whose arrival the object must list
    visibility: str = ""  # the visibility a record set ("": none did)
    deleted: bool = False  # whether a record deleted it
    until: str = ""  # when to stop waiting

    def expecting(self, record: AuditRecord) -> Pending:
        """What the object must show once the write `record` tells of lands."""
        until = utc_timestamp(_seconds(record.at) + RECORD_WAIT)
        batches = set(self.batches)
        if record.event in ("verified", "import") and record.batch_id is not None:
            batches.add(record.batch_id)
        to = record.details.get("to")
        return Pending(
            after=max(self.after, record.at),
            batches=tuple(sorted(batches)),
            visibility=to if record.event == "visibility" and isinstance(to, str) else "",
            deleted=self.deleted or record.event == "delete",
            until=max(self.until, until),
        )

    def shown_by(self, obj: IndexObject) -> bool:
        """Whether the index object shows the writes the file waits for."""
        arrived = {upload.batch_id for upload in obj.uploads}
        return (
            obj.updated_at >= self.after
            and all(batch in arrived for batch in self.batches)
            and self.visibility in ("", obj.visibility)
            and (not self.deleted or obj.deleted is not None)
        )


@dataclass
class Position:
    """Where the copy is: the feed entry and audit record it reflects, what it is made
    of, the files to read again, and which process saved it."""

    feed: int = 0
    audit: int = 0
    shards: str = ""  # the sha256 of the names of its shards
    pending: dict[str, Pending] = field(default_factory=dict)
    writer: str = ""


@dataclass
class Changes:
    """What one follow found changed: the files whose pages may differ, the batches."""

    digests: set[str] = field(default_factory=set)
    batch_ids: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.digests or self.batch_ids)


class SiteSources:
    """The renderer's copy of what the site shows, for one store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._catalog = Catalog(store)
        self._log = AuditLog(store)
        self.files: dict[str, FileSource] = {}
        self.history: dict[str, tuple[Event, ...]] = {}  # by digest, oldest first
        self.batches: dict[int, Batch] = {}
        self.batches_of: dict[str, set[int]] = defaultdict(set)  # digest -> batch ids
        self._members: dict[str, set[str]] = defaultdict(set)  # file shard -> its digests
        self._dirty: set[str] = set()  # shards changed in memory since the last save
        self._everything = False  # rebuilt: every shard is saved, stale ones deleted
        self.position: Position | None = None  # the copy's, in memory
        self._saved: Position | None = None  # the store's, as last read or written
        self._etag: str | None = None  # of the position read or written last
        self.writer = secrets.token_hex(8)  # this process, in the positions it saves

    # -- getting a copy ----------------------------------------------------

    def prepare(self) -> str:
        """Make sure this process holds the copy the store holds: "warm" when it does
        already, "loaded" when it read it, "rebuilt" when it had to make it again from
        the whole store (none saved, or unreadable)."""
        stored = self._stored_position()
        if stored is not None and stored == self._saved and self.position is not None:
            return "warm"
        if stored is not None and self._load(stored):
            return "loaded"
        self.rebuild()
        return "rebuilt"

    def rebuild(self) -> None:
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
        batches: dict[int, Batch] = {}
        for info in self._store.list(f"{CATALOG_PREFIX}batches/"):
            name = info.key.removeprefix(CATALOG_PREFIX).removesuffix(".json")
            batches.update(self._catalog_batches(name))
        files = {obj.digest: FileSource.of(obj) for obj in readable_index_objects(self._store)}
        history = {digest: _sorted(found) for digest, found in sorted(events.items())}
        self._take(files, history, batches)
        self._everything = True
        self._dirty = set(self._shard_names())
        self.position = Position(feed, audit, "", {}, self.writer)

    def forget(self) -> None:
        """Drop the copy held in memory: the next pass loads the store's."""
        self.position = self._saved = None
        self._dirty = set()
        self._everything = False

    # -- following ---------------------------------------------------------

    def follow(self) -> Changes:
        """Apply what changed since the copy's position, in memory; :meth:`save` keeps
        it once the pages show it. Raises :class:`StaleCopy` when the copy cannot be
        followed (too far behind, or the feed was trimmed past it)."""
        assert self.position is not None
        position = self.position
        changes = Changes()
        try:
            touched, feed = self._feed_after(position.feed)
        except FeedGap as exc:
            raise StaleCopy(str(exc)) from None
        audit, records = self._records_after(position.audit)
        now = utc_timestamp(self._clock())
        pending = {
            digest: wait
            for digest, wait in position.pending.items()
            if wait.until >= now and digest in self.files
        }
        new_events: dict[str, list[Event]] = defaultdict(list)
        for record in records:
            if record.digest is None:
                continue
            pending[record.digest] = pending.get(record.digest, Pending()).expecting(record)
            if record.event in SHOWN_EVENTS:
                new_events[record.digest].append(Event.of(record))
        reread = set(pending)
        for shard in sorted(touched):
            if shard.startswith("batches/"):
                for batch in self._apply_batch_shard(shard, changes):
                    self._await_arrivals(batch, pending)
                    reread.update(entry.digest for entry in batch.files.values())
            else:
                reread.update(self._changed_in(shard))
        for digest, found in new_events.items():
            self.history[digest] = _sorted([*self.history.get(digest, ()), *found])
            self._members[file_shard(digest)].add(digest)
            self._dirty.add(file_shard(digest))
            changes.digests.add(digest)
        for digest, obj in self._read_all(sorted(reread)):
            if self._apply_file(digest, obj):
                changes.digests.add(digest)
                self._dirty.add(file_shard(digest))
            waiting = pending.get(digest)
            if waiting is not None and (obj is None or waiting.shown_by(obj)):
                del pending[digest]
        if len(pending) > MAX_PENDING:  # the longest waiting are let go
            kept = sorted(pending.items(), key=lambda item: item[1].until)[-MAX_PENDING:]
            pending = dict(kept)
        self.position = replace(
            position, feed=feed, audit=audit, pending=dict(sorted(pending.items()))
        )
        return changes

    def _feed_after(self, seq: int) -> tuple[set[str], int]:
        touched: set[str] = set()
        for _ in range(MAX_FOLLOWED):
            change = self._catalog.feed.read(seq + 1)
            if change is None:
                return touched, seq
            seq = change.seq
            touched.update(change.shards)
        raise FeedGap(f"over {MAX_FOLLOWED} feed entries behind")

    def _records_after(self, seq: int) -> tuple[int, list[AuditRecord]]:
        """The readable records after `seq`, and the last one read; a record missing
        below the log's head is skipped (logged), not waited for."""
        records: list[AuditRecord] = []
        while len(records) < MAX_FOLLOWED:
            for record in self._log.records_after(seq):
                seq += 1
                if not isinstance(record, str):
                    records.append(record)
            if self._log.head() <= seq:
                return seq, records
            logger.error("audit record %d is missing: the site's history skips it", seq + 1)
            seq += 1
        raise StaleCopy(f"over {MAX_FOLLOWED} audit records behind")

    def _await_arrivals(self, batch: Batch, pending: dict[str, Pending]) -> None:
        """A batch naming stored files: their arrivals are recorded by a later pass."""
        until = utc_timestamp(_seconds(batch.uploaded) + ARRIVAL_WAIT)
        if until < utc_timestamp(self._clock()):
            return
        for entry in batch.files.values():
            if entry.digest in self.files:
                wait = pending.get(entry.digest, Pending())
                pending[entry.digest] = replace(
                    wait,
                    batches=tuple(sorted({*wait.batches, batch.id})),
                    until=max(wait.until, until),
                )

    def _apply_batch_shard(self, shard: str, changes: Changes) -> list[Batch]:
        """Take the catalog's batch shard; the batches that appeared or changed (and
        the ones that went are gone from the copy)."""
        number = int(shard.removeprefix("batches/"))
        fresh = self._catalog_batches(shard)
        found = []
        for batch_id in range(number * BATCHES_PER_SHARD, (number + 1) * BATCHES_PER_SHARD):
            old, new = self.batches.get(batch_id), fresh.get(batch_id)
            if old == new:
                continue
            changes.batch_ids.add(batch_id)
            self._dirty.add(shard)
            for batch in (old, new):
                if batch is not None:
                    changes.digests.update(entry.digest for entry in batch.files.values())
            self._put_batch(batch_id, new)
            if new is not None:
                found.append(new)
        return found

    def _changed_in(self, shard: str) -> set[str]:
        """The digests of a file shard whose catalog entry differs from the copy."""
        entries = {entry["digest"]: entry for entry in self._catalog.shard(shard)}
        known = {digest for digest in self._members.get(shard, ()) if digest in self.files}
        return {
            digest
            for digest in entries.keys() | known
            if digest not in entries
            or digest not in self.files
            or _differs(entries[digest], self.files[digest])
        }

    def _read_all(self, digests: list[str]) -> list[tuple[str, IndexObject | None]]:
        """The index objects of `digests` (None: absent or unreadable), several at once."""

        def read(digest: str) -> tuple[str, IndexObject | None]:
            try:
                found = read_index(self._store, digest)
            except MalformedIndexObject as exc:
                # As a full render would: a file whose object is unreadable is not shown.
                logger.error("the site leaves out %s: %s", digest, exc)
                return digest, None
            return digest, None if found is None else found[0]

        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            return list(pool.map(read, digests))

    def _apply_file(self, digest: str, obj: IndexObject | None) -> bool:
        old = self.files.get(digest)
        new = None if obj is None else FileSource.of(obj)
        if new == old:
            return False
        if new is None:
            del self.files[digest]
        else:
            self.files[digest] = new
            self._members[file_shard(digest)].add(digest)
        return True

    # -- the copy in the store ---------------------------------------------

    def save(self) -> None:
        """Keep the copy: the shards changed since the last save, then the position
        (only when it moved). Another process having saved since makes this one drop
        its copy instead (the next pass loads that one)."""
        if self.position is None:
            return
        shards = self._shard_names()
        position = replace(self.position, shards=_names_hash(shards), writer=self.writer)
        if not self._dirty and _nothing_to_keep(position, self._saved):
            return
        dirty, self._dirty = sorted(self._dirty), set()
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            for _ in pool.map(self._save_shard, dirty):
                pass
        if self._everything:
            stale = [
                info.key
                for prefix in (FILES_PREFIX, BATCHES_PREFIX)
                for info in self._store.list(prefix)
                if _shard_of_state_key(info.key) not in shards
            ]
            for key in stale:
                self._store.delete(key)
            self._everything = False
        data = json.dumps(_position_json(position), sort_keys=True).encode()
        try:
            info = put_over(self._store, POSITION_KEY, data, etag=self._etag)
        except PreconditionFailed:
            logger.warning("another process saved the site's sources: this one reloads")
            self.forget()
            return
        self.position = self._saved = position
        self._etag = info.etag

    def _stored_position(self) -> Position | None:
        try:
            raw, info = self._store.get(POSITION_KEY)
        except ObjectNotFound:
            self._etag = None
            return None
        self._etag = info.etag
        try:
            data = loads_strict(raw)
            return Position(
                feed=int(data["feed"]),
                audit=int(data["audit"]),
                shards=str(data["shards"]),
                pending={
                    str(digest): Pending(
                        after=str(wait["after"]),
                        batches=tuple(int(batch_id) for batch_id in wait["batches"]),
                        visibility=str(wait["visibility"]),
                        deleted=bool(wait["deleted"]),
                        until=str(wait["until"]),
                    )
                    for digest, wait in data["pending"].items()
                },
                writer=str(data["writer"]),
            )
        except (StrictJsonError, KeyError, TypeError, ValueError, AttributeError):
            logger.error("%s is unreadable: the site's sources are read again", POSITION_KEY)
            return None

    def _load(self, position: Position) -> bool:
        """Load the copy the store holds; False when it is not whole (a shard is
        unreadable, or the shards are not the ones the position names)."""
        keys = [
            info.key
            for prefix in (FILES_PREFIX, BATCHES_PREFIX)
            for info in self._store.list(prefix)
        ]
        names = {_shard_of_state_key(key) for key in keys}
        if _names_hash(names) != position.shards:
            logger.error("the site's sources are not whole: they are read again")
            return False
        files: dict[str, FileSource] = {}
        history: dict[str, tuple[Event, ...]] = {}
        batches: dict[int, Batch] = {}
        try:
            for key, raw in self._get_all(keys):
                shard = _shard_of_state_key(key)
                if shard.startswith("batches/"):
                    batches.update(_batches(shard, loads_strict(raw)))
                    continue
                for digest, entry in loads_strict(raw).items():
                    if entry["file"] is not None:
                        files[digest] = _file(entry["file"])
                    if entry["history"]:
                        history[digest] = tuple(Event(**event) for event in entry["history"])
        except (ObjectNotFound, StrictJsonError, KeyError, TypeError, ValueError, AttributeError):
            logger.error("a shard of the site's sources is unreadable: they are read again")
            return False
        self._take(files, history, batches)
        self._dirty = set()
        self._everything = False
        self.position = self._saved = position
        return True

    def _get_all(self, keys: list[str]) -> list[tuple[str, bytes]]:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            return list(pool.map(lambda key: (key, self._store.get(key)[0]), keys))

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
        self.batches_of = defaultdict(set)
        for batch in batches.values():
            for entry in batch.files.values():
                self.batches_of[entry.digest].add(batch.id)

    def _put_batch(self, batch_id: int, batch: Batch | None) -> None:
        old = self.batches.pop(batch_id, None)
        if old is not None:
            for entry in old.files.values():
                self.batches_of[entry.digest].discard(batch_id)
        if batch is not None:
            self.batches[batch_id] = batch
            for entry in batch.files.values():
                self.batches_of[entry.digest].add(batch_id)

    def _shard_names(self) -> set[str]:
        names = {shard for shard, digests in self._members.items() if digests}
        return names | {_batch_shard_name(batch_id) for batch_id in self.batches}

    def _save_shard(self, shard: str) -> None:
        key = f"{STATE_PREFIX}{shard}.json"
        if shard.startswith("batches/"):
            number = int(shard.removeprefix("batches/"))
            ids = range(number * BATCHES_PER_SHARD, (number + 1) * BATCHES_PER_SHARD)
            entries: Any = [_batch_json(self.batches[i]) for i in ids if i in self.batches]
        else:
            entries = {
                digest: {
                    "file": asdict(self.files[digest]) if digest in self.files else None,
                    "history": [asdict(event) for event in self.history.get(digest, ())],
                }
                for digest in sorted(self._members.get(shard, ()))
                if digest in self.files or digest in self.history
            }
        if not entries:
            self._store.delete(key)
            return
        raw = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._store.put(key, raw.encode("utf-8"), content_type="application/json")

    def _catalog_batches(self, shard: str) -> dict[int, Batch]:
        return _batches(shard, self._catalog.shard(shard))


def _batches(shard: str, entries: Any) -> dict[int, Batch]:
    """The batches of catalog batch entries (a malformed entry is left out, logged)."""
    batches = {}
    for entry in entries:
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


def _batch_json(batch: Batch) -> dict[str, Any]:
    data = asdict(batch)
    del data["region"]
    return data


def _batch_shard_name(batch_id: int) -> str:
    return f"batches/{batch_id // BATCHES_PER_SHARD:06d}"


def _shard_of_state_key(key: str) -> str:
    return key.removeprefix(STATE_PREFIX).removesuffix(".json")


def _names_hash(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def _position_json(position: Position) -> dict[str, Any]:
    data = asdict(position)
    data["pending"] = {digest: asdict(wait) for digest, wait in position.pending.items()}
    return data


def _nothing_to_keep(position: Position, saved: Position | None) -> bool:
    """Whether the store's position says all this one does (files no longer pending
    can wait for the next save to leave it: a pass with nothing new writes nothing)."""
    return (
        saved is not None
        and (position.feed, position.audit, position.shards)
        == (saved.feed, saved.audit, saved.shards)
        and all(saved.pending.get(digest) == wait for digest, wait in position.pending.items())
    )


def _seconds(timestamp: str) -> float:
    return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


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
