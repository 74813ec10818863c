"""The audit log: one append-only, hash-chained record per batch, verification,
visibility change, deletion and import, kept in the index region's store.

Keys: ``audit/log/<seq, 12 digits>.json`` for the records, ``audit/head.json``
for the newest one's sequence number and hash. Each record holds the hash of
the one before it (``prev``) and its own (``hash``, sha256 over its canonical
JSON without ``hash``), so a record altered or removed breaks the chain, and
one removed from the end disagrees with the head.

Appending is a compare-and-swap loop: create record ``seq + 1`` only where
none exists (``If-None-Match``), then move the head (``If-Match``). A writer
that died between the two leaves a record past the head; the next writer
finds it, moves the head past it, and appends after. Appends are
at-least-once: a pass retried after a failure may record an event twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from indexer.schema import utc_timestamp
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, StoreUnavailable, put_over
from indexer.strict_json import StrictJsonError, loads_strict

LOG_PREFIX = "audit/log/"
HEAD_KEY = "audit/head.json"
GENESIS = "0" * 64
MAX_ATTEMPTS = 50
EVENTS = ("batch", "import", "verified", "visibility", "delete")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One event: what happened to which file or batch, who did it, when and why."""

    seq: int
    at: str
    event: str
    who: str
    why: str
    digest: str | None
    batch_id: int | None
    details: dict[str, Any] = field(default_factory=dict)
    prev: str = GENESIS
    hash: str = ""

    def sealed(self) -> AuditRecord:
        """This record with its hash."""
        return AuditRecord(**{**asdict(self), "hash": _hash(self)})

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False).encode("utf-8")


def _hash(record: AuditRecord) -> str:
    fields = {name: value for name, value in asdict(record).items() if name != "hash"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_FIELDS: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "at": (str,),
    "event": (str,),
    "who": (str,),
    "why": (str,),
    "digest": (str, type(None)),
    "batch_id": (int, type(None)),
    "details": (dict,),
    "prev": (str,),
    "hash": (str,),
}


def _parsed(raw: bytes, key: str) -> AuditRecord | str:
    """The record `raw` holds, or its key when it is not one every reader can use."""
    try:
        data = loads_strict(raw)
    except StrictJsonError:
        return key
    if (
        not isinstance(data, dict)
        or data.keys() != _FIELDS.keys()
        or not all(type(data[name]) in kinds for name, kinds in _FIELDS.items())
        or _TIMESTAMP.fullmatch(data["at"]) is None
    ):
        return key
    return AuditRecord(**data)


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def record_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:012d}.json"


class AuditLog:
    """Appends to and reads the audit log of one store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def append(
        self,
        event: str,
        *,
        who: str,
        why: str = "",
        digest: str | None = None,
        batch_id: int | None = None,
        details: dict[str, Any] | None = None,
        at: str | None = None,
    ) -> AuditRecord:
        """Add one record after the newest; the record as written. `at` is the time the
        change was written with (an index object's ``updated_at``), else now."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        for attempt in range(MAX_ATTEMPTS):
            seq, prev, etag = self._head()
            record = AuditRecord(
                seq=seq + 1,
                at=at if at is not None else utc_timestamp(self._clock()),
                event=event,
                who=who[:1024],
                why=why[:1000],
                digest=digest,
                batch_id=batch_id,
                details=details or {},
                prev=prev,
            ).sealed()
            try:
                self._store.put(
                    record_key(record.seq),
                    record.to_json(),
                    if_none_match=True,
                    content_type="application/json",
                )
            except PreconditionFailed:
                self._catch_up(seq + 1, etag)  # another writer got there first
                # Contended: back off a random while, growing with each attempt.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter
                continue
            self._move_head(record, etag)
            return record
        raise StoreUnavailable(self._store.region, "the audit log is too contended")

    def records(self) -> Iterator[AuditRecord | str]:
        """Every record, oldest first; an unreadable one as its key."""
        keys = sorted(info.key for info in self._store.list(LOG_PREFIX))
        for key in keys:
            try:
                raw, _ = self._store.get(key)
            except ObjectNotFound:
                continue
            yield _parsed(raw, key)

    def records_after(self, seq: int) -> Iterator[AuditRecord | str]:
        """The records after record `seq`, oldest first (a read each, and one more)."""
        while True:
            seq += 1
            key = record_key(seq)
            try:
                raw, _ = self._store.get(key)
            except ObjectNotFound:
                return
            yield _parsed(raw, key)

    def verify(self) -> list[str]:
        """What breaks the chain: altered, removed or unreadable records; empty when whole."""
        problems = []
        expected_seq, prev = 1, GENESIS
        for record in self.records():
            if isinstance(record, str):
                problems.append(f"{record}: unreadable")
                continue
            if record.seq != expected_seq:
                problems.append(f"record {expected_seq} is missing (next is {record.seq})")
            if record.prev != prev:
                problems.append(f"record {record.seq}: does not follow the record before it")
            if record.hash != _hash(record):
                problems.append(f"record {record.seq}: altered (its hash does not match)")
            expected_seq, prev = record.seq + 1, record.hash
        head_seq, head_hash, _ = self._head()
        if (head_seq, head_hash) != (expected_seq - 1, prev) and head_seq >= expected_seq - 1:
            problems.append(
                f"the head names record {head_seq}, the log ends at record {expected_seq - 1}"
            )
        return problems

    def head(self) -> int:
        """The sequence number the head names: the last record, or one a writer has
        not moved the head past yet."""
        return self._head()[0]

    def _head(self) -> tuple[int, str, str | None]:
        try:
            raw, info = self._store.get(HEAD_KEY)
        except ObjectNotFound:
            return 0, GENESIS, None
        try:
            data = loads_strict(raw)
            return int(data["seq"]), str(data["hash"]), info.etag
        except (StrictJsonError, KeyError, TypeError, ValueError):
            raise StoreUnavailable(self._store.region, f"{HEAD_KEY} is malformed") from None

    def _catch_up(self, seq: int, etag: str | None) -> None:
        """Move the head to record `seq`, written by a writer that has not moved it (yet)."""
        try:
            raw, _ = self._store.get(record_key(seq))
        except ObjectNotFound:
            return
        record = _parsed(raw, record_key(seq))
        if isinstance(record, str):
            raise StoreUnavailable(self._store.region, f"{record} is malformed")
        self._move_head(record, etag)

    def _move_head(self, record: AuditRecord, etag: str | None) -> None:
        head = json.dumps({"seq": record.seq, "hash": record.hash}, sort_keys=True).encode()
        # A precondition failing means another writer moved it, to this record or past it.
        with contextlib.suppress(PreconditionFailed):
            put_over(self._store, HEAD_KEY, head, etag=etag)
