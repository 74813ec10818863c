"""The per-digest index object: its JSON form, validated against index_schema.json.

The indexer validates every object before writing it and the gateway every
object it reads, so a malformed object is never trusted by either side.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
import jsonschema

from indexer.digests import ALGORITHM
from indexer.strict_json import StrictJsonError, loads_strict

SCHEMA_VERSION = 1
Visibility = Literal["public", "internal"]
VISIBILITIES: tuple[Visibility, ...] = ("public", "internal")


class MalformedIndexObject(Exception):
    """An index object that is not valid JSON or does not follow index_schema.json."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"malformed index object {key}: {reason}")
        self.key = key
        self.reason = reason


def _schema_path() -> Path:
    # The repository root in a checkout or editable install; share/tooltool in a wheel install.
    candidates = [
        Path(__file__).resolve().parent.parent / "index_schema.json",
        Path(sys.prefix) / "share" / "tooltool" / "index_schema.json",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("index_schema.json not found in " + ", ".join(map(str, candidates)))


def load_schema() -> dict[str, Any]:
    """The index object JSON Schema, as shipped in index_schema.json."""
    return json.loads(_schema_path().read_text(encoding="utf-8"))


_VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _compiled_check() -> Callable[[Any], object]:
    """The schema compiled to Python by fastjsonschema: about twenty times faster than
    jsonschema, which is most of what a cache miss of a download costs. It decides only
    that an object is valid; jsonschema still says what is wrong with one that is not.
    The schema's keywords are all draft 7's, which fastjsonschema implements; a test
    holds the two validators to the same verdicts (tests/indexer/test_schema.py)."""
    schema = {key: value for key, value in load_schema().items() if key != "$schema"}
    return fastjsonschema.compile(schema, use_default=False)


_IS_VALID = _compiled_check()


def schema_errors(data: Any) -> list[jsonschema.ValidationError]:
    """What is wrong with `data` as an index object, first error first; [] when valid."""
    try:
        _IS_VALID(data)
    except fastjsonschema.JsonSchemaException:
        return sorted(_VALIDATOR.iter_errors(data), key=lambda error: error.path)
    return []


INDEX_PREFIX = f"index/{ALGORITHM}/"


def index_key(digest: str) -> str:
    """The store key of a digest's index object."""
    return f"{INDEX_PREFIX}{digest}.json"


BLOB_PREFIX = f"{ALGORITHM}/"


def blob_key(digest: str) -> str:
    """The store key of a digest's bytes, as the legacy service stored them."""
    return f"{BLOB_PREFIX}{digest}"


MAX_UPLOADS = 50
MAX_SUMMARY = 200


def summary(message: str) -> str:
    """What an index object keeps of a batch's message: its first line, at most
    MAX_SUMMARY characters. Index objects are read on every cache miss of a download:
    their size must not grow with what an uploader writes (the batch record has it all)."""
    first = message.strip().split("\n", 1)[0].strip()
    return first if len(first) <= MAX_SUMMARY else first[: MAX_SUMMARY - 1] + "\u2026"


def with_uploads(existing: tuple[Upload, ...], arrivals: Iterable[Upload]) -> tuple[Upload, ...]:
    """`existing` and the `arrivals` not yet recorded (one entry a batch), in batch order,
    at most MAX_UPLOADS: the first arrival, and the latest ones. The order is the batches',
    not the order the indexer met them in, so a rebuild makes the same list. A batch's
    arrival is under the least of the names it gave the file, whichever came first."""
    recorded = {_arrival_key(upload): upload for upload in existing}
    for upload in arrivals:
        known = recorded.get(_arrival_key(upload))
        if known is None or upload.filename < known.filename:
            recorded[_arrival_key(upload)] = upload if known is None else _known_as(known, upload)
    uploads = sorted(recorded.values(), key=_arrival_order)
    if len(uploads) > MAX_UPLOADS:
        uploads = uploads[:1] + uploads[len(uploads) - MAX_UPLOADS + 1 :]
    return tuple(uploads)


def _known_as(known: Upload, other: Upload) -> Upload:
    """The arrival `known`, under `other`'s (lesser) name."""
    return replace(known, filename=other.filename)


def _arrival_order(upload: Upload) -> tuple[int, str]:
    return (upload.batch_id if upload.batch_id is not None else -1, upload.filename)


def _arrival_key(upload: Upload) -> tuple[object, ...]:
    # Imports have no batch: each name imported is its own arrival.
    return (upload.batch_id,) if upload.batch_id is not None else (None, upload.filename)


def utc_timestamp(seconds: float) -> str:
    """Format a POSIX time as the schema's UTC timestamp (second precision)."""
    moment = dt.datetime.fromtimestamp(int(seconds), tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Upload:
    """One arrival of a file: the batch (or import) it came with."""

    batch_id: int | None
    filename: str
    author: str
    message: str
    uploaded: str


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Who deleted a file's instances, when and why."""

    by: str
    at: str
    reason: str
    regions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IndexObject:
    """What the index knows of one digest."""

    digest: str
    size: int
    visibility: Visibility
    instances: tuple[str, ...]
    uploads: tuple[Upload, ...]
    verified_at: str
    updated_at: str
    deleted: Tombstone | None = None
    algorithm: str = field(default=ALGORITHM)
    # The ETag of the verified copy in each listed region (older objects may lack
    # some): a listing tells a copy replaced or corrupted behind the indexer's back.
    etags: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Only listed regions have a verified copy: dropping a region drops its ETag.
        listed = {region: etag for region, etag in self.etags.items() if region in self.instances}
        object.__setattr__(self, "etags", dict(sorted(listed.items())))

    @property
    def has_instances(self) -> bool:
        return bool(self.instances)

    def with_changes(self, **changes: Any) -> IndexObject:
        return replace(self, **changes)

    def with_copy(self, region: str, etag: str) -> IndexObject:
        """Listed in `region`, whose verified copy has `etag`."""
        return replace(
            self,
            instances=tuple(sorted({*self.instances, region})),
            etags={**self.etags, region: etag},
        )

    def without_regions(self, regions: Collection[str]) -> IndexObject:
        """No longer listed in `regions`."""
        return replace(
            self, instances=tuple(region for region in self.instances if region not in regions)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "digest": self.digest,
            "size": self.size,
            "visibility": self.visibility,
            "instances": sorted(self.instances),
            "uploads": [_upload_dict(upload) for upload in self.uploads],
            "verified_at": self.verified_at,
            "updated_at": self.updated_at,
            "deleted": None if self.deleted is None else _tombstone_dict(self.deleted),
            "etags": dict(self.etags),
        }

    def to_json(self) -> bytes:
        """Serialise deterministically (sorted keys), validating against the schema first."""
        data = self.to_dict()
        errors = schema_errors(data)
        if errors:
            raise MalformedIndexObject(index_key(self.digest), _describe(errors[0]))
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, *, key: str) -> IndexObject:
        """Parse and validate an index object read from `key`."""
        try:
            data = loads_strict(raw)
        except StrictJsonError as exc:
            raise MalformedIndexObject(key, str(exc)) from None
        errors = schema_errors(data)
        if errors:
            raise MalformedIndexObject(key, _describe(errors[0]))
        if index_key(data["digest"]) != key:
            raise MalformedIndexObject(key, f"digest {data['digest']} does not match the key")
        deleted = data["deleted"]
        return cls(
            digest=data["digest"],
            size=data["size"],
            visibility=data["visibility"],
            instances=tuple(data["instances"]),
            uploads=tuple(Upload(**upload) for upload in data["uploads"]),
            verified_at=data["verified_at"],
            updated_at=data["updated_at"],
            deleted=None
            if deleted is None
            else Tombstone(
                by=deleted["by"],
                at=deleted["at"],
                reason=deleted["reason"],
                regions=tuple(deleted["regions"]),
            ),
            etags=data.get("etags", {}),
        )


def _upload_dict(upload: Upload) -> dict[str, Any]:
    return {
        "batch_id": upload.batch_id,
        "filename": upload.filename,
        "author": upload.author,
        "message": upload.message,
        "uploaded": upload.uploaded,
    }


def _tombstone_dict(tombstone: Tombstone) -> dict[str, Any]:
    return {
        "by": tombstone.by,
        "at": tombstone.at,
        "reason": tombstone.reason,
        "regions": sorted(tombstone.regions),
    }


def _describe(error: jsonschema.ValidationError) -> str:
    location = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{location}: {error.message}"[:300]
