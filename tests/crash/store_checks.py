"""What must hold of a store after any crash, once a clean pass has run: every index
object follows index_schema.json, every catalog shard is whole and says what the index
objects and batch records say, every audit record is readable and the chain verifies,
and nothing is left half-done (pending records, staged bytes, private copies)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from indexer.audit import AuditLog
from indexer.catalog import (
    CATALOG_PREFIX,
    batch_entry,
    file_entry,
    file_shard,
    parse_shard,
    shard_of_key,
)
from indexer.feed import FEED_PREFIX, HEAD_KEY, Feed
from indexer.intake import PENDING, STAGING, VERIFYING, read_batch
from indexer.schema import INDEX_PREFIX, IndexObject, load_schema
from indexer.stores import Regions, Store

_SCHEMA = jsonschema.Draft202012Validator(load_schema())


def index_objects(store: Store) -> tuple[dict[str, IndexObject], list[str]]:
    """Every index object, by digest, and what is wrong with those that are invalid
    (checked by jsonschema itself, not the indexer's compiled check)."""
    found, problems = {}, []
    for info in store.list(INDEX_PREFIX):
        raw, _ = store.get(info.key)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            problems.append(f"{info.key}: not JSON: {exc}")
            continue
        errors = [error.message for error in _SCHEMA.iter_errors(data)]
        if errors:
            problems.append(f"{info.key}: {errors[0]}")
            continue
        index_object = IndexObject.from_json(raw, key=info.key)
        found[index_object.digest] = index_object
    return found, problems


def catalog_problems(store: Store, indexed: dict[str, IndexObject]) -> list[str]:
    """What is wrong with the catalog: a shard unreadable or with an unusable entry, an
    entry unlike its index object or batch record, a file missing from its shard."""
    problems = []
    listed: set[str] = set()
    for info in store.list(CATALOG_PREFIX):
        shard = shard_of_key(info.key)
        if shard is None:
            problems.append(f"{info.key}: not a shard")
            continue
        raw, _ = store.get(info.key)
        member = shard.partition("/")[0]
        entries = parse_shard(shard, raw)
        if len(entries) != len(json.loads(raw)[member]):
            problems.append(f"{info.key}: unusable entries")
        for entry in entries:
            if member == "files":
                listed.add(entry["digest"])
                expected: Any = indexed.get(entry["digest"])
                expected = None if expected is None else file_entry(expected)
            else:
                batch = read_batch(store, entry["id"])
                expected = None if batch is None else batch_entry(batch)
            if entry != expected:
                problems.append(f"{info.key}: {entry} is not {expected}")
    for digest in indexed.keys() - listed:
        problems.append(f"{digest[:16]}: not in {file_shard(digest)}")
    return problems


def feed_problems(store: Store) -> list[str]:
    """Feed entries that cannot be read, and a head behind the last entry."""
    feed = Feed(store)
    problems, last = [], 0
    for info in store.list(FEED_PREFIX):
        name = info.key.removeprefix(FEED_PREFIX).removesuffix(".json")
        if info.key == HEAD_KEY or not name.isdigit():
            continue
        last = max(last, int(name))
        try:
            feed.read(int(name))
        except Exception as exc:
            problems.append(f"{info.key}: {exc}")
    if feed.head() < last:
        problems.append(f"the feed head {feed.head()} is behind entry {last}")
    return problems


def audit_problems(store: Store) -> list[str]:
    log = AuditLog(store)
    unreadable = [f"{record}: unreadable" for record in log.records() if isinstance(record, str)]
    return unreadable + log.verify()


def leftovers(regions: Regions) -> list[str]:
    """Work a clean pass should have finished: pending records, staged bytes, private
    copies of staged bytes."""
    found = [info.key for info in regions.index.list(PENDING)]
    for store in regions:
        found += [f"{store.region}:{info.key}" for info in store.list(STAGING)]
        found += [f"{store.region}:{info.key}" for info in store.list(VERIFYING)]
    return found
