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
from collections.abc import Iterable
from typing import Any

from indexer.intake import BATCHES, Batch, MalformedRecord, read_batch
from indexer.schema import IndexObject
from indexer.stores import ObjectNotFound, PreconditionFailed, Store

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


def batch_entry(batch: Batch) -> dict[str, Any]:
    """A batch as the catalog (and ``GET /upload/<id>``) shows it."""
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
            }
            for name, entry in sorted(batch.files.items())
        },
    }


class Catalog:
    """Reads and writes the catalog objects of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def files(self) -> list[dict[str, Any]]:
        return self._load(FILES_KEY, "files")[0]

    def batches(self) -> list[dict[str, Any]]:
        return self._load(BATCHES_KEY, "batches")[0]

    def rebuild(self, index_objects: Iterable[IndexObject], batches: Iterable[Batch]) -> None:
        """Write both objects from scratch (nothing, when they already say the same)."""
        self._write(FILES_KEY, "files", [file_entry(obj) for obj in index_objects], "digest")
        self._write(BATCHES_KEY, "batches", [batch_entry(batch) for batch in batches], "id")

    def update(self, index_objects: Iterable[IndexObject], batches: Iterable[Batch]) -> None:
        """Replace the entries of these files and batches, keeping the others."""
        self._merge(FILES_KEY, "files", [file_entry(obj) for obj in index_objects], "digest")
        self._merge(BATCHES_KEY, "batches", [batch_entry(batch) for batch in batches], "id")

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

    def _load(self, key: str, member: str) -> tuple[list[dict[str, Any]], str | None]:
        try:
            raw, info = self._store.get(key)
        except ObjectNotFound:
            return [], None
        try:
            return list(json.loads(raw)[member]), info.etag
        except (ValueError, KeyError, TypeError):
            logger.error("the catalog object %s is malformed; it will be rebuilt", key)
            return [], info.etag

    def _write(self, key: str, member: str, entries: list[dict[str, Any]], sort_key: str) -> None:
        raw = _dump(member, entries, sort_key)
        try:
            if self._store.get(key)[0] == raw:
                return
        except ObjectNotFound:
            pass
        self._store.put(key, raw, content_type="application/json")

    def _merge(self, key: str, member: str, entries: list[dict[str, Any]], sort_key: str) -> None:
        if not entries:
            return
        changed = {entry[sort_key]: entry for entry in entries}
        for _ in range(MAX_ATTEMPTS):
            current, etag = self._load(key, member)
            merged = {entry[sort_key]: entry for entry in current} | changed
            try:
                self._store.put(
                    key,
                    _dump(member, list(merged.values()), sort_key),
                    if_none_match=etag is None,
                    if_match=etag,
                    content_type="application/json",
                )
                return
            except PreconditionFailed:
                continue
        logger.warning("the catalog object %s kept changing; the next check rebuilds it", key)


def _dump(member: str, entries: list[dict[str, Any]], sort_key: str) -> bytes:
    ordered = sorted(entries, key=lambda entry: entry[sort_key])
    return json.dumps({member: ordered}, sort_keys=True, separators=(",", ":")).encode()
