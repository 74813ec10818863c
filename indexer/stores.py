"""The object-store interface shared by every backend, its errors, and the set of regions.

A store holds one region's objects: blobs at ``sha512/<digest>``, index
objects, and later intake records. Backends: :class:`indexer.s3_store.S3Store`
and :class:`indexer.local_store.LocalStore`; both pass tests/contracts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

OCTET_STREAM = "application/octet-stream"

# Keys are ours, never a caller's: a conservative alphabet keeps a local store
# inside its directory and makes every key valid on every S3 implementation.
_KEY = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*(/[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*)*")
_MAX_KEY_LENGTH = 1024
_MAX_SEGMENT_LENGTH = 255  # a file name's limit on common filesystems


class StoreError(Exception):
    """Base class for every error a store raises."""


class InvalidKey(StoreError, ValueError):
    """A key outside the alphabet stores accept."""

    def __init__(self, key: str) -> None:
        super().__init__(f"invalid store key {key[:200]!r}")
        self.key = key


class ObjectNotFound(StoreError):
    """The object does not exist."""

    def __init__(self, region: str, key: str) -> None:
        super().__init__(f"{region}: no object at {key}")
        self.region = region
        self.key = key


class PreconditionFailed(StoreError):
    """A conditional write or copy found the object in another state than expected."""

    def __init__(self, region: str, key: str) -> None:
        super().__init__(f"{region}: precondition failed for {key}")
        self.region = region
        self.key = key


class StoreUnavailable(StoreError):
    """The store could not be reached or refused the operation."""

    def __init__(self, region: str, reason: str) -> None:
        super().__init__(f"{region}: store unavailable: {reason}")
        self.region = region
        self.reason = reason


class StoreFull(StoreUnavailable):
    """The store has no room for the write (a full disk or quota); nothing was left behind."""

    def __init__(self, region: str, reason: str) -> None:
        super().__init__(region, reason)
        self.args = (f"{region}: store full: {reason}",)


def check_key(key: str) -> str:
    """Return `key` when it is a valid store key, else raise :class:`InvalidKey`."""
    if (
        len(key) > _MAX_KEY_LENGTH
        or _KEY.fullmatch(key) is None
        or any(len(segment) > _MAX_SEGMENT_LENGTH for segment in key.split("/"))
    ):
        raise InvalidKey(key)
    return key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows of an object without reading it.

    `version_id` names these very bytes on a versioned store (None elsewhere, and in
    listings): :meth:`Store.open` and :meth:`Store.copy` reach them by it whatever is
    written to the key later. Two infos of the same bytes are equal whether or not they
    carry it (the ETag tells versions apart; listings name none).
    """

    key: str
    size: int
    etag: str
    version_id: str | None = field(default=None, compare=False)


@runtime_checkable
class Store(Protocol):
    """One region's object store.

    Writes are whole: a reader sees the old object or the new one, never a
    part. `if_none_match=True` creates only when absent; `if_match=etag`
    replaces only that version; both raise :class:`PreconditionFailed`.
    """

    region: str

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        """The object's bytes and info; :class:`ObjectNotFound` when absent."""
        ...

    def open(
        self, key: str, *, if_match: str | None = None, version_id: str | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A stream of the object's bytes, for reading large objects; with `if_match`,
        only of that version (else :class:`PreconditionFailed`); with `version_id` (from
        :meth:`head`), of that version whatever the key holds now (else
        :class:`ObjectNotFound`: the version is gone, or the store keeps none)."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """The object's info, naming its version on a versioned store;
        :class:`ObjectNotFound` when absent."""
        ...

    def is_versioned(self) -> bool:
        """Whether every write of a key makes a new version that :meth:`head` names and
        :meth:`open` and :meth:`copy` can read by its id (an S3 bucket with versioning
        enabled). Asked of the store once, then remembered: a store whose versioning is
        suspended later names the versions it then writes None, so nothing is ever
        pinned by a version id that does not pin."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = OCTET_STREAM,
    ) -> ObjectInfo:
        """Write a whole object from memory."""
        ...

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str = OCTET_STREAM) -> None:
        """Write a whole object from a stream of any size."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in no particular order."""
        ...

    def delete(self, key: str, *, every_version: bool = False) -> None:
        """Delete the object; deleting an absent object is not an error. With
        `every_version`, a versioned store forgets every version of the key too (staged
        bytes that must not linger), where a plain delete leaves them behind a marker."""
        ...

    def copy(
        self,
        source: str,
        destination: str,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        """Server-side copy within this store; `if_match` conditions on the source's ETag;
        `version_id` copies that version of the source (:class:`ObjectNotFound` when it is
        gone)."""
        ...

    def copy_from(self, source: Store, key: str, *, if_match: str | None = None) -> ObjectInfo:
        """Copy `key` from another region's store to the same key in this one, whole;
        `if_match` conditions on the source's ETag. Server-side between two stores of
        this kind; streamed through this process from a store of another kind."""
        ...

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A URL anyone may GET the object from for `expires_in` seconds."""
        ...

    def presign_put(
        self,
        key: str,
        *,
        expires_in: int,
        content_type: str = OCTET_STREAM,
        content_length: int | None = None,
    ) -> str:
        """A URL one may PUT the object to, with that Content-Type (and Content-Length,
        when given), for `expires_in` seconds."""
        ...

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the store cannot serve requests."""
        ...


def put_over(
    store: Store,
    key: str,
    data: bytes,
    *,
    etag: str | None,
    content_type: str = "application/json",
) -> ObjectInfo:
    """Write `key` only over the version read (`etag`), or where none was (None): the
    compare-and-swap every read-modify-write of the index, intake and audit makes.
    :class:`PreconditionFailed` when another writer got there first."""
    return store.put(
        key, data, if_none_match=etag is None, if_match=etag, content_type=content_type
    )


def stream_copy(
    source: Store, destination: Store, key: str, *, if_match: str | None = None
) -> ObjectInfo:
    """Copy `key` from `source` to `destination` through this process, streamed: between
    stores that cannot copy from each other server-side (and for the local store, whose
    "server" is this process)."""
    with source.open(key, if_match=if_match) as stream:
        destination.put_stream(key, stream)
    return destination.head(key)


class Regions:
    """The configured stores, one per region, in configuration order.

    The first region also holds the index objects (the index region).
    """

    def __init__(self, stores: Iterable[Store]) -> None:
        self._stores: dict[str, Store] = {}
        for store in stores:
            if store.region in self._stores:
                raise ValueError(f"region {store.region} configured twice")
            self._stores[store.region] = store
        if not self._stores:
            raise ValueError("at least one region must be configured")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._stores)

    @property
    def index(self) -> Store:
        """The store holding index objects."""
        return next(iter(self._stores.values()))

    def __getitem__(self, region: str) -> Store:
        return self._stores[region]

    def get(self, region: str, default: Store) -> Store:
        return self._stores.get(region, default)

    def __contains__(self, region: object) -> bool:
        return region in self._stores

    def __iter__(self) -> Iterator[Store]:
        return iter(self._stores.values())

    def __len__(self) -> int:
        return len(self._stores)

    def choose(self, instances: Sequence[str], preferred: str | None) -> Store | None:
        """The store to serve a file from: `preferred` when it holds a copy, else the first
        configured region that does; None when no configured region holds one."""
        if preferred is not None and preferred in instances and preferred in self._stores:
            return self._stores[preferred]
        for region, store in self._stores.items():
            if region in instances:
                return store
        return None
