"""Intake records: upload batches and the files waiting for verification, kept in the store.

The gateway writes them when a batch is posted; the indexer reads them,
verifies what was uploaded and removes them when the work they describe is
durable. Keys (in the index region's store):

- ``intake/batch-counter``: the last batch id (integers, as the legacy API
  has them), advanced by compare-and-swap;
- ``intake/batches/<id>.json``: a batch, as answered by ``GET /upload/<id>``;
- ``intake/pending/<owner>/<batch id>/<digest>[-<size>].json``: a file of a
  batch the indexer has yet to verify or record, with the staging key its
  bytes are PUT to (``-<size>`` only then). ``<owner>`` is a hash of the
  uploader's client id, so one listing of a short prefix tells what an
  uploader has pending (files, and declared bytes from the keys alone), at a
  cost bounded by their quota, whatever everyone else has pending. The
  message is not repeated here: it is in the batch record;
- ``intake/failures/<digest>/<batch id>.json``: an upload that failed
  verification (or never came), for operators.

Staging keys are ``staging/<digest>/<random>``: unguessable, and never the
key anything is served from.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from indexer.digests import is_valid_digest
from indexer.schema import VISIBILITIES
from indexer.stores import ObjectNotFound, PreconditionFailed, Store, StoreUnavailable, put_over
from indexer.strict_json import StrictJsonError, loads_strict

COUNTER_KEY = "intake/batch-counter"
BATCHES = "intake/batches/"
PENDING = "intake/pending/"
FAILURES = "intake/failures/"
STAGING = "staging/"
VERIFYING = "verifying/"  # the indexer's private copies of staged uploads
MAX_COUNTER_ATTEMPTS = 20
MAX_UPLOAD_SIZE = 5 * 1024**3  # the most one signed PUT can carry on S3
# How long after its URL expired a PUT the store let start in time may still land: a
# store checks a signed URL's expiry when the request arrives, not when its body ends.
# An hour carries a whole MAX_UPLOAD_SIZE at 1.5 MiB/s, and any clock skew between the
# gateway, the store and the indexer.
LATE_PUT = 3600.0


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
            batch = cls(files=files, **data)
        except (TypeError, AttributeError, KeyError) as exc:
            raise MalformedRecord(key, str(exc)) from None
        if not _is_well_typed(batch):
            raise MalformedRecord(key, "a field has the wrong type")
        return batch


def _is_well_typed_pending(pending: Pending) -> bool:
    """Every field of the type and within the range the indexer relies on: a record no
    gateway wrote (by hand, or damaged) is set aside, never a pass stopped."""
    return (
        isinstance(pending.digest, str)
        and is_valid_digest(pending.digest)
        and type(pending.size) is int
        and 0 <= pending.size <= MAX_UPLOAD_SIZE
        and pending.visibility in VISIBILITIES
        and type(pending.batch_id) is int
        and pending.batch_id >= 1
        and bool(pending.filenames)
        and all(0 < len(name) <= 1024 for name in pending.filenames)
        and isinstance(pending.author, str)
        and isinstance(pending.region, str)
        and (pending.staging_key is None or isinstance(pending.staging_key, str))
        and _is_time(pending.created)
        and (pending.put_url_expires is None or _is_time(pending.put_url_expires))
    )


def _is_time(value: object) -> bool:
    """A POSIX time this side of the year 6000."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value < 2**37


def _is_well_typed(batch: Batch) -> bool:
    texts = (batch.author, batch.uploaded, batch.message, batch.region)
    return (
        type(batch.id) is int
        and all(isinstance(text, str) for text in texts)
        and all(
            isinstance(name, str)
            and type(entry.size) is int
            and isinstance(entry.digest, str)
            and isinstance(entry.algorithm, str)
            and isinstance(entry.visibility, str)
            for name, entry in batch.files.items()
        )
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """A file of a batch that the indexer has yet to verify and index.

    One record per digest of a batch, with every name the batch gave it.
    `put_url_expires` bounds when the staging key's signed PUT URLs expire (no URL
    signed for it is valid later); records written before it was recorded have None.
    """

    digest: str
    size: int
    visibility: str
    batch_id: int
    filenames: tuple[str, ...]
    author: str
    region: str
    staging_key: str | None  # None when the file was already stored
    created: float
    put_url_expires: float | None = None

    @property
    def key(self) -> str:
        return pending_key(self.author, self.batch_id, self.digest, self.staged_size)

    @property
    def staged_size(self) -> int | None:
        """The declared size of bytes still to come (None when the file was stored)."""
        return None if self.staging_key is None else self.size

    def to_json(self) -> bytes:
        data = asdict(self)
        if data["put_url_expires"] is None:
            # Written only when known: a record without it reads as before, everywhere.
            del data["put_url_expires"]
        return _dump(data)

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> Pending:
        data = _load(raw, key)
        filenames = data.get("filenames")
        if not isinstance(filenames, list) or not all(isinstance(n, str) for n in filenames):
            raise MalformedRecord(key, "filenames must be a list of strings")
        try:
            pending = cls(**{**data, "filenames": tuple(filenames)})
        except TypeError as exc:
            raise MalformedRecord(key, str(exc)) from None
        if not _is_well_typed_pending(pending):
            raise MalformedRecord(key, "a field has the wrong type")
        if pending.key != key:
            raise MalformedRecord(key, "the record does not match its key")
        return pending


@dataclass(frozen=True, slots=True)
class PendingLoad:
    """What one uploader has pending: files, and bytes still to be uploaded."""

    files: int = 0
    bytes: int = 0


def owner_segment(author: str) -> str:
    """The key segment of an uploader's pending records (a hash: client ids hold any text)."""
    return hashlib.sha256(author.encode("utf-8")).hexdigest()[:32]


def pending_key(author: str, batch_id: int, digest: str, staged_size: int | None) -> str:
    size = "" if staged_size is None else f"-{staged_size}"
    return f"{pending_prefix(author)}{batch_id}/{digest}{size}.json"


def pending_prefix(author: str) -> str:
    """Where one uploader's pending records are."""
    return f"{PENDING}{owner_segment(author)}/"


def pending_load(store: Store, author: str) -> PendingLoad:
    """What `author` has pending, from one listing of their own prefix."""
    files = size = 0
    for info in store.list(pending_prefix(author)):
        files += 1
        name = info.key.rsplit("/", 1)[-1].removesuffix(".json")
        _, _, staged = name.partition("-")
        if staged.isdigit():
            size += int(staged)
    return PendingLoad(files, size)


def batch_key(batch_id: int) -> str:
    return f"{BATCHES}{batch_id}.json"


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
            if not (raw.isascii() and raw.strip().isdigit()):
                raise StoreUnavailable(store.region, f"{COUNTER_KEY} is malformed")
            current, etag = int(raw), info.etag
        try:
            put_over(
                store, COUNTER_KEY, str(current + 1).encode(), etag=etag, content_type="text/plain"
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
    # UTF-8, not \u escapes: a message of emoji takes 4 bytes a character, not 12.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _load(raw: bytes, key: str) -> dict[str, Any]:
    try:
        data = loads_strict(raw)
    except StrictJsonError as exc:
        raise MalformedRecord(key, str(exc)) from None
    if not isinstance(data, dict):
        raise MalformedRecord(key, "not a JSON object")
    return data
