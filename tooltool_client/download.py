"""Downloading one file's bytes into its part file: streamed, hashed as they arrive,
resumed with ``Range`` from what the part file already holds, and checked against
the manifest's size and digest before anyone may use them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

import urllib3

from tooltool_client.api import REDIRECTS, Location, problem
from tooltool_client.digests import CHUNK
from tooltool_client.errors import (
    IntegrityError,
    ServerError,
    StagingError,
    TransportError,
    unwritable,
)
from tooltool_client.staging import is_named
from tooltool_client.transport import Transport

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
MAX_REDIRECTS = 5


class BlobRefused(ServerError):
    """The signed URL was refused (expired, say): worth locating the file again."""


class WrongSize(IntegrityError):
    """The server's file is another size than the manifest's: asking it again is no use."""


class Download:
    """The bytes of one file (`size`, `digest`) from a :class:`Location` into `part`."""

    def __init__(
        self,
        transport: Transport,
        *,
        size: int,
        digest: str,
        part: Path,
        on_bytes: Callable[[int], None] = lambda count: None,
    ) -> None:
        self._transport = transport
        self._size = size
        self._digest = digest
        self._part = part
        self._on_bytes = on_bytes
        self._hasher = hashlib.sha512()
        self._offset = 0
        # The part file (device, inode) and length that `_hasher` holds the hash of.
        self._hashed: tuple[int, int, int] | None = None
        self.received = 0  # bytes that came over the network, all attempts

    def run(self, location: Location, headers: Mapping[str, str]) -> None:
        """Fill the part file and verify it. A transfer cut short leaves the part file
        to resume from (this run's next attempt, or the next run); wrong bytes remove it,
        and so does a failed write (:class:`StagingError`: a disk full, say), to free
        the space."""
        try:
            with _writing(self._part):
                self._resume()
                truncate = 0 if self._offset else os.O_TRUNC
                with _open_part(self._part, os.O_RDWR | os.O_CREAT | truncate) as out:
                    out.seek(self._offset)
                    try:
                        if self._offset < self._size:
                            self._receive(location, headers, out)
                    finally:
                        is_ours = self._note_written(out)
                    # The bytes hashed went to this file: another renamed over its name
                    # (a shared cache's other user, a second fetch once the legacy
                    # client's purge removed the lock) is not what was verified.
                    if not is_ours:
                        raise IntegrityError("the part file was replaced while it was written")
        except (IntegrityError, StagingError):
            self._discard()
            raise
        if self._hasher.hexdigest() != self._digest:
            self._discard()
            raise IntegrityError("the bytes received do not match the manifest's sha512 digest")

    def _note_written(self, out: BinaryIO) -> bool:
        """Whether the part file's name is still the file written; if so, remember it, so
        the next attempt need not read back what it holds."""
        written = os.fstat(out.fileno())
        is_ours = is_named(self._part, written)
        self._hashed = (written.st_dev, written.st_ino, self._offset) if is_ours else None
        return is_ours

    def _resume(self) -> None:
        """Hash what the part file holds so far: read again only when it is not the file
        this download left (a first attempt, or a part file left by another run)."""
        try:
            found = os.stat(self._part, follow_symlinks=False)
        except OSError:
            found = None  # absent (nothing yet), or the read below says what is wrong
        if found is not None and (found.st_dev, found.st_ino, found.st_size) == self._hashed:
            return  # this download's own file and bytes, hashed as they were written
        self._hasher = hashlib.sha512()
        self._offset = 0
        if found is None and not os.path.lexists(self._part):
            return
        try:
            with _open_part(self._part, os.O_RDONLY) as stream:
                while chunk := stream.read(CHUNK):
                    self._offset += len(chunk)
                    if self._offset > self._size:
                        break
                    self._hasher.update(chunk)
        except FileNotFoundError:
            return
        except _NotAPartFile:
            self._offset = self._size + 1  # removed below, never followed
        if self._offset > self._size:
            self._discard()
            self._hasher = hashlib.sha512()
            self._offset = 0

    def _receive(self, location: Location, headers: Mapping[str, str], out: BinaryIO) -> None:
        """The bytes from `location`, following its redirects as the legacy client did (a
        CDN may send on to its origin), without the credentials: they are the server's."""
        url, request_headers = location.url, dict(headers)
        if self._offset:
            request_headers["Range"] = f"bytes={self._offset}-"
        for _ in range(MAX_REDIRECTS + 1):
            with self._transport.open("GET", url, headers=request_headers) as response:
                redirect = (
                    response.headers.get("Location") if response.status in REDIRECTS else None
                )
                if redirect is None:
                    self._take(response, out)
                    break
                response.close()  # a redirect page: not worth reading
            url = urljoin(url, redirect)
            request_headers.pop("Authorization", None)
        else:
            raise TransportError(f"more than {MAX_REDIRECTS} redirects from the signed URL")
        if self._offset < self._size:
            raise TransportError(
                f"the connection closed after {self._offset} of {self._size} bytes"
            )

    def _take(self, response: urllib3.BaseHTTPResponse, out: BinaryIO) -> None:
        """The response's bytes into the part file, if it is the right answer."""
        status = response.status
        if status == 200 and self._offset:
            # The server sent the whole file: start over.
            with _writing(self._part):
                out.seek(0)
                out.truncate()
            self._hasher = hashlib.sha512()
            self._offset = 0
        elif status == 206 and not _starts_at(response.headers.get("Content-Range"), self._offset):
            self._discard()
            raise TransportError("the server answered another range; starting over")
        elif status not in (200, 206):
            if status == 416:
                self._discard()  # our part file is no prefix of theirs
            error = problem(status, response.read(64 * 1024))
            raise BlobRefused(f"the signed URL was refused: {error}")
        declared = _declared_size(response)
        if declared is not None and declared != self._size:
            # Another file (or the manifest is wrong): said at once, not as a cut or an
            # overflow after the bytes came.
            raise WrongSize(
                f"the server's file is {declared} bytes, the manifest says {self._size}"
            )
        # urllib3 raises its own errors for the network (never a bare OSError): an
        # OSError here is the part file's.
        # read1, not read: read(CHUNK) waits for a whole chunk and, when the connection
        # breaks meanwhile, drops what it had; read1 hands over what has arrived (about
        # 100 KiB on loopback), so a cut keeps every byte received for the resume. What
        # arrives is written and hashed a CHUNK at a time: per write, hash and progress
        # call, a CHUNK costs no more than a read.
        pending: list[bytes] = []
        pending_size = 0
        try:
            while chunk := response.read1(CHUNK):
                if self._offset + pending_size + len(chunk) > self._size:
                    raise IntegrityError(
                        f"the server sent more than the manifest's {self._size} bytes"
                    )
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= CHUNK:
                    self._keep(pending, out)
                    pending_size = 0
        finally:
            with _writing(self._part):
                self._keep(pending, out)
                out.flush()

    def _keep(self, pending: list[bytes], out: BinaryIO) -> None:
        """Write and hash the bytes received (and empty `pending`)."""
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        with _writing(self._part):
            out.write(data)
        self._hasher.update(data)
        self._offset += len(data)
        self.received += len(data)
        self._on_bytes(len(data))

    def _discard(self) -> None:
        self._hashed = None
        # Not there, or not removable (a folder at its name): writing it fails next, as one
        # line; here it would hide the error being raised.
        with contextlib.suppress(OSError):
            self._part.unlink()


class _NotAPartFile(OSError):
    """What is at the part file's path is a symlink, a FIFO or another non-file."""


def _open_part(path: Path, flags: int) -> BinaryIO:
    """The part file, never through a symlink or into a FIFO: another user of a shared
    cache could plant one at its predictable name, for the bytes to go elsewhere."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _NotAPartFile(exc.errno, "not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotAPartFile(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb" if flags & os.O_ACCMODE == os.O_RDONLY else "r+b")


@contextlib.contextmanager
def _writing(part: Path) -> Iterator[None]:
    """A local write's failure as a :class:`StagingError`: inside a response's block,
    where a bare OSError would pass for a network error and be retried."""
    try:
        yield
    except OSError as exc:
        raise unwritable(part, exc) from None


def _declared_size(response: urllib3.BaseHTTPResponse) -> int | None:
    """The size of the whole file as the answer states it (Content-Range's total of a 206,
    Content-Length of a 200 not content-encoded), if it does."""
    if response.status == 206:
        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range") or "")
        total = found.group(3) if found is not None else "*"
        return None if total == "*" else int(total)
    length = response.headers.get("Content-Length")
    if response.headers.get("Content-Encoding") or length is None or not length.isdigit():
        return None
    return int(length)


def _starts_at(content_range: str | None, offset: int) -> bool:
    found = _CONTENT_RANGE.fullmatch(content_range or "")
    return found is not None and int(found.group(1)) == offset
