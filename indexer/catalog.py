"""The catalog: what the search endpoints answer from, so no request lists the bucket.

Two objects the indexer maintains in the index region's store:
``catalog/files.json`` (every indexed file: digest, size, visibility,
instances, the filenames it arrived under) and ``catalog/batches.json``
(every upload batch, as ``GET /upload/<id>`` shows it). Both are rebuilt
from index objects and batch records on every consistency check, and patched
after passes that indexed something; output is sorted, so a rebuild that
finds nothing new writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from indexer.index import read_index
from indexer.intake import BATCHES, Batch, MalformedRecord, read_batch
from indexer.schema import IndexObject, MalformedIndexObject
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, put_over
from indexer.strict_json import StrictJsonError, check_text

logger = logging.getLogger(__name__)

FILES_KEY = "catalog/files.json"
BATCHES_KEY = "catalog/batches.json"
MAX_ATTEMPTS = 8


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


def batch_entry(
    batch: Batch, has_instances: Callable[[str], bool] = lambda digest: False
) -> dict[str, Any]:
    """A batch as the catalog (and ``GET /upload/<id>``) shows it; `has_instances` tells
    whether a digest is stored (the legacy batch file entries carry it)."""
    return {
        "id": batch.id,
        "author": batch.author,
        "uploaded": batch.uploaded,
        "message": batch.message,
        "files": {
            name: {
                "size": entry.size,
                "digest": entry.digest,
                "algorithm": entry.algorithm,
                "visibility": entry.visibility,
                "has_instances": has_instances(entry.digest),
            }
            for name, entry in sorted(batch.files.items())
        },
    }


class Catalog:
    """Reads and writes the catalog objects of one store.

    Every write is a compare-and-swap on what was read, with entries loaded
    fresh from index objects and batch records inside the loop, so a slower
    writer never puts back an older entry or drops a newer one.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def files(self) -> list[dict[str, Any]]:
        return self._load(FILES_KEY, "files")[0]

    def batches(self) -> list[dict[str, Any]]:
        return self._load(BATCHES_KEY, "batches")[0]

    def rebuild(self, index_objects: Iterable[IndexObject], batches: Iterable[Batch]) -> None:
        """Write both objects from a full listing (nothing, when they already say the same).

        Entries written since the listing began are kept while their file or
        batch still exists.
        """
        index_objects = list(index_objects)
        stored = {obj.digest for obj in index_objects if obj.has_instances}
        files = {obj.digest: file_entry(obj) for obj in index_objects}
        self._swap(
            FILES_KEY,
            "files",
            "digest",
            lambda current: (
                files | self._fresh_files([digest for digest in current if digest not in files])
            ),
        )
        listed = {batch.id: batch_entry(batch, stored.__contains__) for batch in batches}
        self._swap(
            BATCHES_KEY,
            "batches",
            "id",
            lambda current: (
                listed
                | self._fresh_batches([batch_id for batch_id in current if batch_id not in listed])
            ),
        )

    def update(self, digests: Iterable[str], batch_ids: Iterable[int]) -> None:
        """Bring the entries of these files and batches up to date, keeping the others."""
        digests, batch_ids = list(digests), list(batch_ids)
        if digests:
            self._swap(
                FILES_KEY,
                "files",
                "digest",
                lambda current: _patched(current, digests, self._fresh_files(digests)),
            )
        if batch_ids:
            self._swap(
                BATCHES_KEY,
                "batches",
                "id",
                lambda current: _patched(current, batch_ids, self._fresh_batches(batch_ids)),
            )

    def batch_records(self) -> list[Batch]:
        """Every batch record in the store."""
        batches = []
        for info in self._store.list(BATCHES):
            name = info.key.removeprefix(BATCHES).removesuffix(".json")
            if not name.isdigit():
                continue
            try:
                batch = read_batch(self._store, int(name))
            except MalformedRecord as exc:
                logger.error("skipping %s", exc)
                continue
            if batch is not None:
                batches.append(batch)
        return batches

    def _fresh_files(self, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
        entries = {}
        for digest in digests:
            try:
                found = read_index(self._store, digest)
            except MalformedIndexObject as exc:
                logger.error("leaving out of the catalog: %s", exc)
                continue
            if found is not None:
                entries[digest] = file_entry(found[0])
        return entries

    def _fresh_batches(self, batch_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        entries = {}
        for batch_id in batch_ids:
            try:
                batch = read_batch(self._store, batch_id)
            except MalformedRecord as exc:
                logger.error("leaving out of the catalog: %s", exc)
                continue
            if batch is not None:
                entries[batch_id] = batch_entry(batch, self._has_instances)
        return entries

    def _has_instances(self, digest: str) -> bool:
        try:
            found = read_index(self._store, digest)
        except MalformedIndexObject:
            return False
        return found is not None and found[0].has_instances

    def _load(self, key: str, member: str) -> tuple[list[dict[str, Any]], str | None, bytes]:
        try:
            raw, info = self._store.get(key)
        except ObjectNotFound:
            return [], None, b""
        try:
            # Leniently: one unusable entry is left out below, not the whole catalog.
            entries = list(json.loads(raw)[member])
        except (ValueError, RecursionError, KeyError, TypeError):
            logger.error("the catalog object %s is malformed; it will be rebuilt", key)
            return [], info.etag, raw
        sound = [entry for entry in entries if _is_sound(member, entry)]
        if len(sound) < len(entries):
            logger.error("skipped %d malformed entries of %s", len(entries) - len(sound), key)
        return sound, info.etag, raw

    def _swap(
        self,
        key: str,
        member: str,
        sort_key: str,
        compute: Callable[[dict[Any, dict[str, Any]]], dict[Any, dict[str, Any]]],
    ) -> None:
        for _ in range(MAX_ATTEMPTS):
            entries, etag, raw = self._load(key, member)
            current = {entry[sort_key]: entry for entry in entries}
            new = _dump(member, list(compute(current).values()), sort_key)
            if new == raw:
                return
            try:
                put_over(self._store, key, new, etag=etag)
                return
            except PreconditionFailed:
                continue
        logger.warning("the catalog object %s kept changing; the next check rebuilds it", key)


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


def _patched(
    current: dict[Any, dict[str, Any]], keys: list[Any], fresh: dict[Any, dict[str, Any]]
) -> dict[Any, dict[str, Any]]:
    patched = {key: entry for key, entry in current.items() if key not in keys}
    return patched | fresh


def _dump(member: str, entries: list[dict[str, Any]], sort_key: str) -> bytes:
    ordered = sorted(entries, key=lambda entry: entry[sort_key])
    return json.dumps(
        {member: ordered}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
