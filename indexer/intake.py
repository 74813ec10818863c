"""Intake records: upload batches and the files waiting for verification, kept in the store.

The gateway writes them when a batch is posted; the indexer reads them,
verifies what was uploaded and removes them when the work they describe is
durable. Keys (in the index region's store):

- ``intake/batch-counter``: the last batch id (integers, as the legacy API
  has them), advanced by compare-and-swap;
- ``intake/batches/<id>.json``: a batch, as answered by ``GET /upload/<id>``;
- ``intake/pending/<digest>/<batch id>.json``: a file of a batch the
  indexer has yet to verify or record, with the staging key its bytes are
  PUT to;
- ``intake/failures/<digest>/<batch id>.json``: an upload that failed
  verification (or never came), for operators.

Staging keys are ``staging/<digest>/<random>``: unguessable, and never the
key anything is served from.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from indexer.stores import ObjectNotFound, PreconditionFailed, Store, StoreUnavailable

COUNTER_KEY = "intake/batch-counter"
BATCHES = "intake/batches/"
PENDING = "intake/pending/"
FAILURES = "intake/failures/"
STAGING = "staging/"
VERIFYING = "verifying/"  # the indexer's private copies of staged uploads
MAX_COUNTER_ATTEMPTS = 20


class MalformedRecord(Exception):
    """An intake record that cannot be read."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"malformed intake record {key}: {reason}")
        self.key = key


@dataclass(frozen=True, slots=True)
class BatchFile:
    """One file of a batch, as the uploader declared it."""

    size: int
    digest: str
    algorithm: str
    visibility: str


@dataclass(frozen=True, slots=True)
class Batch:
    """An upload batch: the commit-like message and its files."""

    id: int
    author: str
    uploaded: str
    message: str
    region: str
    files: dict[str, BatchFile]

    @property
    def key(self) -> str:
        return batch_key(self.id)

    @property
    def visibilities(self) -> frozenset[str]:
        return frozenset(entry.visibility for entry in self.files.values())

    def to_json(self) -> bytes:
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> Batch:
        data = _load(raw, key)
        try:
            files = {name: BatchFile(**entry) for name, entry in data.pop("files").items()}
            return cls(files=files, **data)
        except (TypeError, AttributeError, KeyError) as exc:
            raise MalformedRecord(key, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Pending:
    """A file of a batch that the indexer has yet to verify and index."""

    digest: str
    size: int
    visibility: str
    batch_id: int
    filename: str
    author: str
    message: str
    uploaded: str
    region: str
    staging_key: str | None  # None when the file was already stored
    created: float

    @property
    def key(self) -> str:
        return pending_key(self.digest, self.batch_id)

    def to_json(self) -> bytes:
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> Pending:
        try:
            return cls(**_load(raw, key))
        except TypeError as exc:
            raise MalformedRecord(key, str(exc)) from None


def batch_key(batch_id: int) -> str:
    return f"{BATCHES}{batch_id}.json"


def pending_key(digest: str, batch_id: int) -> str:
    return f"{PENDING}{digest}/{batch_id}.json"


def pending_prefix(digest: str) -> str:
    return f"{PENDING}{digest}/"


def failure_key(digest: str, batch_id: int) -> str:
    return f"{FAILURES}{digest}/{batch_id}.json"


def new_staging_key(digest: str) -> str:
    """An unguessable key for one upload's unverified bytes."""
    return f"{STAGING}{digest}/{secrets.token_urlsafe(24)}"


def next_batch_id(store: Store) -> int:
    """Advance the batch counter by compare-and-swap; every caller gets a distinct id."""
    for attempt in range(MAX_COUNTER_ATTEMPTS):
        try:
            raw, info = store.get(COUNTER_KEY)
        except ObjectNotFound:
            current, etag = 0, None
        else:
            current, etag = int(raw), info.etag
        try:
            store.put(
                COUNTER_KEY,
                str(current + 1).encode(),
                if_none_match=etag is None,
                if_match=etag,
                content_type="text/plain",
            )
        except PreconditionFailed:
            # Contended: back off a random while, growing with each attempt.
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - jitter, not secrets
            continue
        return current + 1
    raise StoreUnavailable(store.region, "the batch counter is too contended")


def read_batch(store: Store, batch_id: int) -> Batch | None:
    try:
        raw, _ = store.get(batch_key(batch_id))
    except ObjectNotFound:
        return None
    return Batch.from_json(raw, key=batch_key(batch_id))


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _load(raw: bytes, key: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRecord(key, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedRecord(key, "not a JSON object")
    return data
