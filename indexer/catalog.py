"""The catalog: what the search endpoints answer from, so no request lists the bucket.

Sharded, so that no write and no read grows with the store:

- ``catalog/files/<abc>.json``: the indexed files whose digest starts with
  ``abc`` (4,096 shards: about 250 entries each at a million files), each
  entry as :func:`file_entry` makes it, sorted by digest;
- ``catalog/batches/<n>.json``: batches ``n*100`` to ``n*100+99`` as
  :func:`batch_entry` makes them (without ``has_instances``, which the
  gateway reads from the files' shards when it answers), sorted by id.

A change rewrites the shards of the files and batches it touched (a
compare-and-swap each, with entries read fresh from index objects and batch
records inside the loop, so a slower writer never puts back an older entry),
then appends one entry to the change feed (:mod:`indexer.feed`) naming them.
Shards are a function of the index objects and batch records alone: the
consistency check and ``tooltool-indexer rebuild`` rewrite exactly the shards
that differ, and a rebuild from nothing is byte-identical.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from indexer.feed import Feed, is_shard
from indexer.index import read_index
from indexer.intake import BATCHES, Batch, MalformedRecord, read_batch
from indexer.schema import IndexObject, MalformedIndexObject
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, put_over
from indexer.strict_json import StrictJsonError, check_text

logger = logging.getLogger(__name__)

CATALOG_PREFIX = "catalog/"
FILE_SHARD_DIGITS = 3
BATCHES_PER_SHARD = 100
SWEPT_KEY = "feed/swept.json"
MAX_ATTEMPTS = 30  # writers of one shard at once: batches posted together, say
MAX_PAUSE = 0.25  # seconds, the longest wait between two attempts


def file_shard(digest: str) -> str:
    """The shard holding a digest's entry (a name the feed uses too)."""
    return f"files/{digest[:FILE_SHARD_DIGITS]}"


def batch_shard(batch_id: int) -> str:
    return f"batches/{batch_id // BATCHES_PER_SHARD:06d}"


def shard_key(shard: str) -> str:
    return f"{CATALOG_PREFIX}{shard}.json"


def shard_of_key(key: str) -> str | None:
    """The shard a catalog key holds, or None for a key that is no shard."""
    name = key.removeprefix(CATALOG_PREFIX).removesuffix(".json")
    return name if key.startswith(CATALOG_PREFIX) and is_shard(name) else None


def file_entry(index_object: IndexObject) -> dict[str, Any]:
    """A file as the catalog (and ``GET /file``) shows it."""
    return {
        "algorithm": index_object.algorithm,
        "digest": index_object.digest,
        "size": index_object.size,
        "visibility": index_object.visibility,
        "has_instances": index_object.has_instances,
        "instances": sorted(index_object.instances),
        "filenames": sorted({upload.filename for upload in index_object.uploads}),
    }


def batch_entry(batch: Batch, has_instances: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """A batch as ``GET /upload/<id>`` shows it; `has_instances` tells whether a digest is
    stored (the legacy batch file entries carry it; the catalog's do not)."""
    files = {}
    for name, entry in sorted(batch.files.items()):
        files[name] = {
            "size": entry.size,
            "digest": entry.digest,
            "algorithm": entry.algorithm,
            "visibility": entry.visibility,
        }
        if has_instances is not None:
            files[name]["has_instances"] = has_instances(entry.digest)
    return {
        "id": batch.id,
        "author": batch.author,
        "uploaded": batch.uploaded,
        "message": batch.message,
        "files": files,
    }


Entries = dict[Any, dict[str, Any]]


class Catalog:
    """Reads and writes the catalog shards of one store, and announces their changes."""

    def __init__(self, store: Store, *, feed: Feed | None = None) -> None:
        self._store = store
        self.feed = feed if feed is not None else Feed(store)

    def shard(self, shard: str) -> list[dict[str, Any]]:
        """The shard's entries, leaving out any a reader could not use."""
        return self._load(shard)[0]

    def shards(self) -> list[str]:
        """Every shard in the store."""
        found = (shard_of_key(info.key) for info in self._store.list(CATALOG_PREFIX))
        return sorted(shard for shard in found if shard is not None)

    def update(self, digests: Iterable[str], batch_ids: Iterable[int]) -> None:
        """Bring the entries of these files and batches up to date, then announce the
        shards: a bounded number of reads and writes, whatever the store holds."""
        wanted: dict[str, list[Any]] = defaultdict(list)
        for digest in set(digests):
            wanted[file_shard(digest)].append(digest)
        for batch_id in set(batch_ids):
            wanted[batch_shard(batch_id)].append(batch_id)
        announced = []
        for shard, keys in sorted(wanted.items()):
            changed = self._swap(shard, functools.partial(self._refreshed, keys=keys))
            # A file shard is announced even when it was up to date: a pass finishing
            # the work of one killed between its shard and its feed entry must tell the
            # replicas, and file shards are small. A batch shard (a hundred batches) only
            # changes when a batch is posted; the next post to it, or the consistency
            # check's sweep, announces what a killed writer left unannounced.
            if changed or _member(shard) == "files":
                announced.append(shard)
        self.feed.append(announced)

    def rebuild(self, index_objects: Iterable[IndexObject], batches: Iterable[Batch]) -> int:
        """Rewrite every shard that differs from what the index objects and batch records
        say, remove shards nothing belongs in, announce the changed ones; how many.

        An entry that differs from the shard is read again before it is written,
        so a change made since the listing began is kept, not undone.
        """
        computed: dict[str, Entries] = defaultdict(dict)
        for index_object in index_objects:
            computed[file_shard(index_object.digest)][index_object.digest] = file_entry(
                index_object
            )
        for batch in batches:
            computed[batch_shard(batch.id)][batch.id] = batch_entry(batch)
        changed = []
        for shard in sorted(set(computed) | set(self.shards())):
            listed = computed.get(shard, {})
            if self._swap(shard, functools.partial(self._reconciled, listed=listed)):
                changed.append(shard)
        self.feed.append(changed)
        return len(changed)

    def sweep(self) -> int:
        """Announce every shard whose version changed since the last sweep; how many.

        A writer killed between its shard and its feed entry left a change no
        replica was told of: the consistency check sweeps, so they learn of it
        within a check interval. One listing of the catalog, and the last
        sweep's versions (``feed/swept.json``, outside the derived state).
        """
        current = {}
        for info in self._store.list(CATALOG_PREFIX):
            shard = shard_of_key(info.key)
            if shard is not None:
                current[shard] = info.etag
        try:
            raw, info = self._store.get(SWEPT_KEY)
            previous, etag = json.loads(raw), info.etag
        except ObjectNotFound:
            previous, etag = None, None
        except ValueError:
            previous, etag = {}, None  # unreadable: announce everything, once
        changed = []
        if isinstance(previous, dict):
            changed = sorted(
                shard
                for shard in current.keys() | previous.keys()
                if current.get(shard) != previous.get(shard)
            )
            self.feed.append(changed)
        data = json.dumps(current, sort_keys=True, separators=(",", ":")).encode()
        with contextlib.suppress(PreconditionFailed):  # another check swept meanwhile
            put_over(self._store, SWEPT_KEY, data, etag=etag)
        return len(changed)

    def batch_records(self, on_error: Callable[[str], None] | None = None) -> list[Batch]:
        """Every batch record in the store (`on_error` is told of each unreadable one)."""
        batches = []
        for info in self._store.list(BATCHES):
            name = info.key.removeprefix(BATCHES).removesuffix(".json")
            if not name.isdigit():
                continue
            try:
                batch = read_batch(self._store, int(name))
            except MalformedRecord as exc:
                logger.error("skipping %s", exc)
                if on_error is not None:
                    on_error(info.key)
                continue
            if batch is not None:
                batches.append(batch)
        return batches

    def _refreshed(self, current: Entries, *, keys: list[Any]) -> Entries:
        return _patched(current, keys, self._fresh(keys))

    def _reconciled(self, current: Entries, *, listed: Entries) -> Entries:
        differing = [
            key for key in current.keys() | listed.keys() if current.get(key) != listed.get(key)
        ]
        return _patched(listed, differing, self._fresh(differing))

    def _fresh(self, keys: Iterable[Any]) -> Entries:
        """The entries of these digests and batch ids, read now."""
        entries: Entries = {}
        for key in keys:
            try:
                if isinstance(key, str):
                    found = read_index(self._store, key)
                    if found is not None:
                        entries[key] = file_entry(found[0])
                else:
                    batch = read_batch(self._store, key)
                    if batch is not None:
                        entries[key] = batch_entry(batch)
            except (MalformedIndexObject, MalformedRecord) as exc:
                logger.error("leaving out of the catalog: %s", exc)
        return entries

    def _load(self, shard: str) -> tuple[list[dict[str, Any]], str | None, bytes]:
        key = shard_key(shard)
        try:
            raw, info = self._store.get(key)
        except ObjectNotFound:
            return [], None, b""
        return parse_shard(shard, raw), info.etag, raw

    def _swap(self, shard: str, compute: Callable[[Entries], Entries]) -> bool:
        """Compare-and-swap the shard to what `compute` makes of it; whether it changed."""
        sort_key = "digest" if _member(shard) == "files" else "id"
        for attempt in range(MAX_ATTEMPTS):
            entries, etag, raw = self._load(shard)
            current = {entry[sort_key]: entry for entry in entries}
            new = compute(current)
            if not new:
                if etag is None:
                    return False
                self._store.delete(shard_key(shard))  # only ever a shard whose files are gone
                return True
            data = _dump(_member(shard), list(new.values()), sort_key)
            if data == raw:
                return False
            try:
                put_over(self._store, shard_key(shard), data, etag=etag)
                return True
            except PreconditionFailed:
                # Contended: back off a random while, doubling with each attempt.
                pause = min(MAX_PAUSE, 0.002 * 2**attempt)
                time.sleep(random.uniform(0, pause))  # noqa: S311 - jitter, not a secret
                continue
        logger.warning("the catalog shard %s kept changing; the next check rewrites it", shard)
        return False


def parse_shard(shard: str, raw: bytes) -> list[dict[str, Any]]:
    """A shard's entries from its bytes, leniently: one unusable entry is left out, not the
    whole shard (an entry written by an older version, or by hand, may be unusable)."""
    member = _member(shard)
    try:
        entries = list(json.loads(raw)[member])
    except (ValueError, RecursionError, KeyError, TypeError):
        logger.error("the catalog shard %s is malformed; the next check rewrites it", shard)
        return []
    sound = [entry for entry in entries if _is_sound(member, entry)]
    if len(sound) < len(entries):
        logger.error("skipped %d malformed entries of %s", len(entries) - len(sound), shard)
    return sound


def _member(shard: str) -> str:
    return shard.partition("/")[0]


def _is_sound(member: str, entry: Any) -> bool:
    """An entry every reader can use: each field the answers carry, of its type, and
    text that encodes (an entry written by an older version, or by hand, may not be)."""
    try:
        check_text(entry)
    except StrictJsonError:
        return False
    if member == "files":
        return _has_fields(entry, _FILE_FIELDS) and _are_texts(entry["filenames"])
    if not _has_fields(entry, _BATCH_FIELDS):
        return False
    files = entry["files"]
    return all(
        isinstance(name, str) and _has_fields(file, _BATCH_FILE_FIELDS)
        for name, file in files.items()
    )


_FILE_FIELDS = {
    "algorithm": str,
    "digest": str,
    "size": int,
    "visibility": str,
    "has_instances": bool,
    "instances": list,
    "filenames": list,
}
_BATCH_FIELDS = {"id": int, "author": str, "uploaded": str, "message": str, "files": dict}
_BATCH_FILE_FIELDS = {"size": int, "digest": str, "algorithm": str, "visibility": str}


def _has_fields(entry: Any, fields: dict[str, type]) -> bool:
    return isinstance(entry, dict) and all(
        type(entry.get(name)) is kind for name, kind in fields.items()
    )


def _are_texts(values: list[Any]) -> bool:
    return all(isinstance(value, str) for value in values)


def _patched(current: Entries, keys: Iterable[Any], fresh: Entries) -> Entries:
    """`current` with the entries of `keys` replaced by `fresh` (or removed, when absent)."""
    gone = set(keys)
    patched = {key: entry for key, entry in current.items() if key not in gone}
    return patched | fresh


def _dump(member: str, entries: list[dict[str, Any]], sort_key: str) -> bytes:
    ordered = sorted(entries, key=lambda entry: entry[sort_key])
    return json.dumps(
        {member: ordered}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
