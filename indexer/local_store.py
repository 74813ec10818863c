"""The local directory store: the embedded default, one region (``local``) or several.

One store is one region: its objects are files at their keys under its
directory (the data directory, or ``<data directory>/<region>/`` with
TOOLTOOL_LOCAL_REGIONS). Every write goes to a temporary file first and is
renamed into place, so readers never see a part.
Conditional writes hold an exclusive lock on ``<root>/.lock``, which makes
them atomic across processes sharing the directory. Its signed URLs point at
the gateway's ``/__store__`` route (see :mod:`indexer.signing`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from indexer.signing import UrlSigner
from indexer.stores import (
    OCTET_STREAM,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Store,
    StoreFull,
    StoreUnavailable,
    check_key,
    stream_copy,
)

LOCAL_REGION = "local"
SMALL_OBJECT = 16 * 1024 * 1024
_COPY_BUFFER = 1024 * 1024
_COMMIT_ATTEMPTS = 5


class LocalStore:
    """A :class:`indexer.stores.Store` over a directory."""

    def __init__(
        self,
        root: Path,
        *,
        signer: UrlSigner,
        region: str = LOCAL_REGION,
        public_url: str | None = None,
        min_free_bytes: int = 0,
    ) -> None:
        self.root = root
        self.region = region
        self.signer = signer
        self.min_free_bytes = min_free_bytes
        # Absolute base of signed URLs; None makes them root-relative, and the
        # gateway resolves them against the request's own base URL.
        self._public_url = public_url.rstrip("/") if public_url else ""
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, region={self.region!r})"

    # -- reads -------------------------------------------------------------

    def path(self, key: str) -> Path:
        """The file holding `key` (which may not exist)."""
        return self.root / check_key(key)

    def head(self, key: str) -> ObjectInfo:
        with self.open(key) as stream:
            return ObjectInfo(key, os.fstat(stream.fileno()).st_size, _version(stream))

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        with self.open(key) as stream:
            version = _version(stream)
            data = stream.read()
            return data, ObjectInfo(key, len(data), version)

    def is_versioned(self) -> bool:
        # A key holds one version; its copies are snapshots (hard links) instead.
        return False

    @contextlib.contextmanager
    def open(
        self, key: str, *, if_match: str | None = None, version_id: str | None = None
    ) -> Iterator[BinaryIO]:
        if version_id is not None:  # never handed out: it names no version kept here
            raise ObjectNotFound(self.region, key)
        try:
            stream = self.path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(self.region, key) from exc
        except OSError as exc:
            raise os_error(self.region, exc) from exc
        with stream:
            if not _is_regular(os.fstat(stream.fileno()).st_mode):
                raise ObjectNotFound(self.region, key)
            # The open descriptor keeps reading this version whatever replaces it.
            if if_match is not None and _version(stream) != if_match:
                raise PreconditionFailed(self.region, key)
            yield stream

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk from the deepest directory the prefix names, not from the root:
        # listing one uploader's or one digest's records costs what they hold.
        start = self.root
        for segment in prefix.split("/")[:-1]:
            if not segment or segment.startswith(".") or segment == "..":
                break
            start = start / segment
        for directory, subdirectories, files in os.walk(start):
            # Hidden entries (.tmp, .lock, the signing key) are the store's own.
            subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
            relative = os.path.relpath(directory, self.root)
            base = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                subdirectories[:] = []
                continue
            for name in files:
                key = base + name
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                with contextlib.suppress(ObjectNotFound):
                    yield self.head(key)

    # -- writes ------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = OCTET_STREAM,
    ) -> ObjectInfo:
        def write(stream: BinaryIO) -> None:
            stream.write(data)

        self._write(key, write, if_none_match=if_none_match, if_match=if_match)
        if len(data) <= SMALL_OBJECT:
            return ObjectInfo(key, len(data), _etag_of(data))  # named by what was written
        return self.head(key)

    def put_stream(self, key: str, stream: BinaryIO, *, content_type: str = OCTET_STREAM) -> None:
        def write(target: BinaryIO) -> None:
            shutil.copyfileobj(stream, target, _COPY_BUFFER)

        self._write(key, write)

    def copy(
        self,
        source: str,
        destination: str,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectInfo:
        # Files are never written in place (every write renames a new file into
        # place), so a hard link is a snapshot of the source's version: as good
        # as a copy, and free. The link is checked against `if_match` itself.
        if version_id is not None or self.path(source).is_dir():
            raise ObjectNotFound(self.region, source)
        with self.temporary() as snapshot:
            try:
                snapshot.unlink()
                os.link(self.path(source), snapshot)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise ObjectNotFound(self.region, source) from exc
            except OSError as exc:
                raise os_error(self.region, exc) from exc
            with snapshot.open("rb") as stream:
                if not _is_regular(os.fstat(stream.fileno()).st_mode):
                    raise ObjectNotFound(self.region, source)
                if if_match is not None and _version(stream) != if_match:
                    raise PreconditionFailed(self.region, source)
            self.commit(snapshot, destination)
        return self.head(destination)

    def copy_from(self, source: Store, key: str, *, if_match: str | None = None) -> ObjectInfo:
        # Another region's directory is another store: its bytes are copied (temp file,
        # then rename), never linked, so a copy damaged in one region is not in the other.
        return stream_copy(source, self, key, if_match=if_match)

    def delete(self, key: str, *, every_version: bool = False) -> None:
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(self.region, exc) from exc
        # Directories are the local store's own way of holding keys: the ones left
        # empty go too (a writer racing this one recreates them, see commit).
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def _write(
        self,
        key: str,
        write: Callable[[BinaryIO], None],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> None:
        try:
            with self.temporary() as temporary:
                with temporary.open("wb") as stream:
                    write(stream)
                    stream.flush()
                    os.fsync(stream.fileno())
                self.commit(temporary, key, if_none_match=if_none_match, if_match=if_match)
        except OSError as exc:
            raise os_error(self.region, exc) from exc

    @contextlib.contextmanager
    def temporary(self) -> Iterator[Path]:
        """A fresh path in the store's temporary directory, removed unless committed."""
        descriptor, name = tempfile.mkstemp(dir=self._tmp)
        os.close(descriptor)
        try:
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def commit(
        self,
        temporary: Path,
        key: str,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> None:
        """Move a complete temporary file into place at `key`, whole, under the conditions.

        A key that collides with a directory (``a`` when ``a/b`` exists, or the
        reverse) fails its precondition, as no object can be written there.
        """
        try:
            for attempt in range(_COMMIT_ATTEMPTS):
                try:
                    self._commit(temporary, key, if_none_match, if_match)
                    return
                except FileNotFoundError:
                    # A delete removed the emptied directory between mkdir and link.
                    if attempt + 1 == _COMMIT_ATTEMPTS or not temporary.exists():
                        raise
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise PreconditionFailed(self.region, key) from exc
        except OSError as exc:
            raise os_error(self.region, exc) from exc

    def _commit(self, temporary: Path, key: str, if_none_match: bool, if_match: str | None) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if if_none_match:
            # link() fails when the target exists: an atomic create-if-absent.
            try:
                os.link(temporary, target)
            except FileExistsError as exc:
                raise PreconditionFailed(self.region, key) from exc
            return
        if if_match is None:
            os.replace(temporary, target)
            return
        with self._lock():
            try:
                with target.open("rb") as current:
                    is_current = _version(current) == if_match
            except FileNotFoundError as exc:
                raise PreconditionFailed(self.region, key) from exc
            if not is_current:
                raise PreconditionFailed(self.region, key)
            os.replace(temporary, target)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- signed URLs ---------------------------------------------------------

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return self._public_url + self.signer.sign(
            "GET", self.region, check_key(key), expires_in=expires_in
        )

    def presign_put(
        self,
        key: str,
        *,
        expires_in: int,
        content_type: str = OCTET_STREAM,
        content_length: int | None = None,
    ) -> str:
        return self._public_url + self.signer.sign(
            "PUT",
            self.region,
            check_key(key),
            expires_in=expires_in,
            content_type=content_type,
            content_length=content_length,
        )

    def check(self) -> None:
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StoreUnavailable(self.region, f"{self.root} is not a writable directory")
        if not os.access(self._tmp, os.W_OK):
            raise StoreUnavailable(self.region, f"{self._tmp} is not writable")
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise StoreFull(
                self.region, f"{free} bytes free in {self.root}, under {self.min_free_bytes}"
            )

    def free_bytes(self) -> int:
        """What unprivileged writers may still write to the store's filesystem."""
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize


def _is_regular(mode: int) -> bool:
    return stat_module.S_ISREG(mode)


def _version(stream: BinaryIO) -> str:
    """The ETag of the open file's version, leaving the stream at its start.

    Objects up to SMALL_OBJECT bytes (index objects, records, the counter,
    the catalog: everything compare-and-swapped) are named by their content,
    as S3 does, so a version can never be mistaken for another: inode numbers
    are reused and coarse timestamps repeat. Larger objects (blobs, uploads)
    are named by inode, mtime and size, which nothing relies on to tell
    versions apart.
    """
    stat = os.fstat(stream.fileno())
    if stat.st_size > SMALL_OBJECT:
        return f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    stream.seek(0)
    data = stream.read()
    stream.seek(0)
    return _etag_of(data)


def _etag_of(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'  # as S3 does


def os_error(region: str, exc: OSError) -> StoreUnavailable:
    """The store error for an OSError: a full disk or quota is :class:`StoreFull`."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(region, reason)
    return StoreUnavailable(region, reason)
