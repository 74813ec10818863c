"""Unpacking fetched archives (manifest entries with ``"unpack": true``), safely.

The legacy ``tooltool.py`` removed the folder named like the archive without
its extensions (``clang.tar.xz`` → ``clang/``) and then extracted everything
where it stood. :func:`unpack_archive` keeps that behaviour, generalised, and
refuses what an archive from a compromised or careless upload could do:

- **Formats by content**, never by name: tar (plain, gzip, bzip2, xz, zstd) and
  zip. Everything is streamed; an archive is never held in memory. A tar is
  decompressed in a thread a few MiB ahead of the extraction.
- **Whole archive or nothing.** Members are extracted into a fresh staging
  folder inside the destination (the same filesystem), each checked before it is
  written; on any refusal, error or interrupt the staging folder is removed and
  the destination is left exactly as it was.
- **Refused** (:class:`UnsafeArchive`): absolute names (``/etc/x``, ``C:\\x``,
  ``\\\\server``); names that leave the tree (``../x``, ``a/../../b``, or through
  a symlink of the archive); symlinks and hard links whose target is absolute or
  resolves outside the tree; a member written through, or replacing, a symlink
  of the archive; a symlink created where an earlier symlink's target goes up
  through (it would redirect that link); devices, fifos and other special files.
  ``\\`` counts as a separator as well as ``/``, as it does on Windows.
- Paths are resolved against a model of what the archive has written so far,
  as the kernel would resolve them, and each member is written at its resolved
  location: extraction never walks through a symlink on disk. Python's tar
  ``"data"`` filter runs after these checks as a second line (it also drops
  ownership).
- **Modes**: setuid, setgid, sticky and group/other write bits are dropped,
  executable bits kept (tar); a zip member's mode only decides whether the file
  is executable.
- **Bounds**: ``max_members`` members and ``max_bytes`` uncompressed bytes (for
  a tar, the uncompressed tar stream, headers included; for a zip, its members'
  sizes), checked against declared sizes before a member is written and against
  the bytes actually decompressed.
- **Placement**: once everything is extracted and checked, each top-level entry
  of the archive replaces whatever the destination has at that name (file,
  folder or symlink, never followed): the old entry is renamed aside, the new
  one renamed in, and the old one deleted once every entry is in place. If a
  rename fails or is interrupted, the entries already placed are put back.
  Nothing else is removed: a folder named like the archive that the archive
  does not hold (``clang/`` beside a ``clang.tar.xz`` holding ``clang-17/``)
  stays.
- **The archive itself** is read to its end and closed before anything in the
  destination is touched, so an archive whose top-level entry has its own name
  (or a folder holding it) is replaced by that entry only after its extraction
  is complete, as every other name is.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import queue
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

import zstandard

from tooltool_client.unpack_errors import (
    ArchiveTooLarge,
    CorruptArchive,
    UnknownArchive,
    UnpackError,
    UnsafeArchive,
    shown,
)

__all__ = [
    "ArchiveTooLarge",
    "CorruptArchive",
    "UnknownArchive",
    "UnpackError",
    "UnsafeArchive",
    "unpack_archive",
]

STAGING_PREFIX = ".tooltool-unpack-"
_CHUNK = 1 << 20
# A stream's buffer is sliced on every read: small enough that the copies stay cheap.
_TAR_BUFFER = 64 << 10
_PREFETCH_DEPTH = 4
_MAX_LINK_HOPS = 40  # the kernel's own limit before ELOOP
_MAX_PATH = 4096  # PATH_MAX: no longer name or link target can be created

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip
)
_SPECIAL_TAR_TYPES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}
_SEPARATORS = re.compile(r"[/\\]")
_DRIVE = re.compile(r"[A-Za-z]:")

# What decompressors and zipfile raise on invalid or truncated data (an OSError
# without an errno is bz2's or gzip's "invalid data"; with one, it is the disk).
_DATA_ERRORS = (
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    zipfile.BadZipFile,
)


def unpack_archive(
    archive: Path,
    *,
    directory: Path,
    max_bytes: int | None = None,
    max_members: int | None = None,
) -> None:
    """Extract `archive` into `directory`, replacing each of its top-level entries there.

    Raises :class:`UnpackError` (one of its subclasses for an unknown, unsafe,
    too large or corrupt archive); then `directory` is as it was.
    """
    name = archive.name
    kind = _detect(archive)
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory))
    except OSError as exc:
        raise UnpackError(name, f"cannot unpack into {shown(str(directory))}: {_why(exc)}") from exc
    try:
        extracted = staging / "tree"
        extracted.mkdir()
        budget = _Budget(name, max_bytes, max_members)
        if kind == "zip":
            _extract_zip(archive, extracted, _Tree(name), budget)
        else:
            _extract_tar(archive, kind, extracted, _Tree(name), budget)
        try:
            _place(extracted, directory, staging / "replaced")
        except OSError as exc:
            raise UnpackError(
                name, f"cannot place its entries in {shown(str(directory))}: {_why(exc)}"
            ) from exc
    finally:
        _remove(staging)


def _why(exc: OSError) -> str:
    return shown(exc.strerror or str(exc))


def _detect(archive: Path) -> str:
    """The archive's format, from its first bytes."""
    try:
        with archive.open("rb") as file:
            head = file.read(tarfile.BLOCKSIZE)
    except OSError as exc:
        raise UnpackError(archive.name, f"cannot read: {_why(exc)}") from exc
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if _is_tar_header(head):
        return "tar"
    raise UnknownArchive(archive.name)


def _is_tar_header(block: bytes) -> bool:
    if len(block) < tarfile.BLOCKSIZE:
        return False
    if block[257:262] == b"ustar":
        return True
    try:  # a pre-POSIX (v7) header: only its checksum says it is one
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Budget:
    """The member and byte limits, counted as the archive is read."""

    def __init__(self, archive: str, max_bytes: int | None, max_members: int | None) -> None:
        self._archive = archive
        self._max_bytes = max_bytes
        self._max_members = max_members
        self._members = 0
        self._declared = 0
        self._read = 0

    def add_member(self) -> None:
        self._members += 1
        if self._max_members is not None and self._members > self._max_members:
            raise ArchiveTooLarge(self._archive, f"more than {self._max_members} members")

    def declare(self, size: int) -> None:
        """Count a member's stated size, before any of it is written."""
        self._declared += size
        self._check(self._declared)

    def add_read(self, size: int) -> None:
        """Count bytes actually decompressed."""
        self._read += size
        self._check(self._read)

    def _check(self, total: int) -> None:
        if self._max_bytes is not None and total > self._max_bytes:
            raise ArchiveTooLarge(self._archive, f"more than {self._max_bytes} bytes uncompressed")


class _Source:
    """Decompressed archive data: counted against the budget, decoding errors translated."""

    def __init__(self, stream: _Readable, archive: str, budget: _Budget) -> None:
        self._stream = stream
        self._archive = archive
        self._budget = budget

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self._stream.read(size)
        except OSError as exc:
            if exc.errno is not None:
                raise UnpackError(self._archive, f"cannot read: {_why(exc)}") from exc
            raise CorruptArchive(self._archive, str(exc)) from exc
        except _DATA_ERRORS as exc:
            raise CorruptArchive(self._archive, str(exc) or type(exc).__name__) from exc
        self._budget.add_read(len(data))
        return data


@dataclass(frozen=True)
class _Link:
    target: str


_DIR = "directory"
_FILE = "file"
_Node = str | _Link


def _parts(path: str) -> list[str]:
    return _SEPARATORS.split(path)


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or _DRIVE.match(path) is not None


class _Tree:
    """What the archive has written so far, to resolve each member's path as the kernel would.

    Paths are relative to the staging root, ``/``-joined, with no symlink in
    them. `_pinned` holds the paths an admitted symlink's target goes up out of
    (``x/..``) while they were not directories: a symlink created there later
    would change where that earlier link points.
    """

    def __init__(self, archive: str) -> None:
        self._archive = archive
        self._nodes: dict[str, _Node] = {}
        self._pinned: set[str] = set()

    def add_directory(self, member: str) -> str | None:
        """Where to create a directory member; None for the root itself (nothing to do)."""
        parts = self._locate(member, _DIR)
        if not parts:
            return None
        return self._record(parts, _DIR)

    def add_file(self, member: str) -> str:
        return self._record(self._locate(member, _FILE), _FILE)

    def add_symlink(self, member: str, target: str) -> str:
        if not target:
            raise CorruptArchive(self._archive, "a symlink with an empty target", member)
        if _is_absolute(target):
            raise self._unsafe(member, "is a symlink to an absolute path")
        link = _Link(target)
        parts = self._locate(member, link)
        self._record(parts[:-1], _DIR)
        if self._resolve(member, target, parts[:-1], follow_last=True, pin=True) is None:
            raise self._unsafe(member, "is a symlink pointing outside the destination folder")
        if "/".join(parts) in self._pinned:
            raise self._unsafe(member, "is a symlink that would redirect an earlier symlink")
        return self._record(parts, link)

    def add_hard_link(self, member: str, target: str) -> tuple[str, str]:
        """Where to create a hard link member, and the resolved path of its target."""
        if _is_absolute(target):
            raise self._unsafe(member, "is a hard link to an absolute path")
        resolved = self._resolve(member, target, [], follow_last=True, pin=False)
        if resolved is None:
            raise self._unsafe(member, "is a hard link pointing outside the destination folder")
        source = "/".join(resolved)
        if self._nodes.get(source) != _FILE:
            detail = f"a hard link to '{target}', which is not an earlier file of the archive"
            raise CorruptArchive(self._archive, detail, member)
        parts = self._locate(member, _FILE)
        if "/".join(parts) in self._nodes:  # tarfile links without removing what is there
            detail = "a hard link where the archive already has a member of that name"
            raise CorruptArchive(self._archive, detail, member)
        return self._record(parts, _FILE), source

    def _locate(self, member: str, node: _Node) -> list[str]:
        """The resolved path of a new member, checked against what the archive has there."""
        if _is_absolute(member):
            raise self._unsafe(member, "is an absolute path")
        parts = self._resolve(member, member, [], follow_last=False, pin=False)
        if parts is None:
            raise self._unsafe(member, "escapes the destination folder")
        if not parts and node != _DIR:
            raise self._unsafe(member, "names the destination folder itself")
        for depth in range(1, len(parts)):
            if self._nodes.get("/".join(parts[:depth])) == _FILE:
                raise CorruptArchive(self._archive, "a member inside a file", member)
        path = "/".join(parts)
        existing = self._nodes.get(path)
        if isinstance(existing, _Link) and existing != node:
            what = "replaces" if isinstance(node, _Link) else "writes through"
            raise self._unsafe(member, f"{what} the symlink '{shown(path)}' of the archive")
        if (existing == _DIR) != (node == _DIR) and existing in (_DIR, _FILE):
            detail = (
                f"a {'directory' if node == _DIR else 'file'} where the archive has a {existing}"
            )
            raise CorruptArchive(self._archive, detail, member)
        return parts

    def _record(self, parts: list[str], node: _Node) -> str:
        for depth in range(1, len(parts)):
            self._nodes.setdefault("/".join(parts[:depth]), _DIR)
        path = "/".join(parts)
        if parts:
            self._nodes[path] = node
        return path

    def _resolve(
        self, member: str, path: str, start: list[str], *, follow_last: bool, pin: bool
    ) -> list[str] | None:
        """`path` resolved from `start` through the archive's symlinks; None if it leaves."""
        if len(path) > _MAX_PATH:  # also bounds the work of resolving it
            raise CorruptArchive(self._archive, f"a path longer than {_MAX_PATH}", member)
        resolved = list(start)
        pending = _parts(path)[::-1]
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    return None
                left = "/".join(resolved)
                if pin and self._nodes.get(left) != _DIR:
                    self._pinned.add(left)
                resolved.pop()
                continue
            node = self._nodes.get("/".join([*resolved, part]))
            if isinstance(node, _Link) and (pending or follow_last):
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise self._unsafe(member, "goes through too many symlinks")
                pending.extend(_parts(node.target)[::-1])
                continue
            resolved.append(part)
        return resolved

    def _unsafe(self, member: str, reason: str) -> UnsafeArchive:
        return UnsafeArchive(self._archive, member, reason)


class _TarAdmission:
    """The tar extraction filter: each member checked and relocated before it is written."""

    def __init__(self, archive: str, tree: _Tree, budget: _Budget) -> None:
        self._archive = archive
        self._tree = tree
        self._budget = budget
        self.current: str | None = None

    def __call__(self, member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        self.current = name = member.name
        self._budget.add_member()
        changes: dict[str, Any] = {}
        if member.isreg():
            self._budget.declare(member.size)
            changes["name"] = self._tree.add_file(name)
        elif member.isdir():
            path = self._tree.add_directory(name)
            if path is None:
                return None
            changes["name"] = path
        elif member.issym():
            changes["name"] = self._tree.add_symlink(name, member.linkname)
        elif member.islnk():
            changes["name"], changes["linkname"] = self._tree.add_hard_link(name, member.linkname)
        else:
            what = _SPECIAL_TAR_TYPES.get(member.type, "a special file")
            raise UnsafeArchive(self._archive, name, f"is {what}")
        return tarfile.data_filter(member.replace(**changes, deep=False), destination)


def _decompressor(raw: BinaryIO, kind: str) -> _Readable:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        reader: _Readable = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=_CHUNK, read_across_frames=True, closefd=False
        )
        return reader
    return raw


class _Prefetcher:
    """Decompression in a thread of its own, a few chunks ahead of the extraction.

    Decompressors release the GIL: this overlaps decompressing with writing
    files, as ``tar -xJf`` does with its ``xz`` process, in at most
    `_PREFETCH_DEPTH` chunks of memory. What reading raises there, `read`
    raises here.
    """

    def __init__(self, source: _Readable) -> None:
        self._source = source
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_PREFETCH_DEPTH)
        self._stopping = threading.Event()
        self._pending = memoryview(b"")
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="unpack-prefetch", daemon=True)

    def __enter__(self) -> _Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join()

    def read(self, size: int = -1, /) -> bytes:
        if self._failure is not None:
            raise self._failure
        if not self._pending:
            chunk = self._chunks.get()
            if isinstance(chunk, BaseException):
                self._failure = chunk
                raise chunk
            if not chunk:
                self._chunks.put(chunk)  # the end, for every later read
            self._pending = memoryview(chunk)
        piece = self._pending[:size] if size >= 0 else self._pending
        self._pending = self._pending[len(piece) :]
        return bytes(piece)

    def _fill(self) -> None:
        chunk: bytes | BaseException = b"-"
        while chunk and not isinstance(chunk, BaseException):
            try:
                chunk = self._source.read(_CHUNK)
            except BaseException as exc:  # raised again by the extracting thread
                chunk = exc
            while not self._stopping.is_set():
                try:
                    self._chunks.put(chunk, timeout=0.1)
                    break
                except queue.Full:
                    continue
            else:
                return


class _TarFile(tarfile.TarFile):
    """A tar file that copies members in large reads (tarfile's default is 16 KiB)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["copybufsize"] = _CHUNK
        super().__init__(*args, **kwargs)


def _extract_tar(archive: Path, kind: str, root: Path, tree: _Tree, budget: _Budget) -> None:
    name = archive.name
    admission = _TarAdmission(name, tree, budget)
    try:
        with (
            archive.open("rb") as raw,
            _Prefetcher(_Source(_decompressor(raw, kind), name, budget)) as source,
        ):
            stream = cast(BinaryIO, source)  # a stream ("r|") is only ever read
            with _TarFile.open(fileobj=stream, mode="r|", bufsize=_TAR_BUFFER, errorlevel=2) as tar:
                # Every member is checked and relocated by `admission` before it is written.
                tar.extractall(root, filter=admission)  # noqa: S202
    except tarfile.FilterError as exc:  # the data filter disagreeing with the checks above
        member = exc.tarinfo.name if exc.tarinfo is not None else ""
        raise UnsafeArchive(name, member, "is refused by tar's data filter") from exc
    except tarfile.TarError as exc:
        raise CorruptArchive(name, str(exc), admission.current) from exc
    except OSError as exc:
        where = "" if admission.current is None else f" member '{shown(admission.current)}'"
        raise UnpackError(name, f"cannot write{where}: {_why(exc)}") from exc


def _extract_zip(archive: Path, root: Path, tree: _Tree, budget: _Budget) -> None:
    name = archive.name
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            for info in members:
                budget.add_member()
                budget.declare(info.file_size)
            for info in members:
                _ZipMember(zipped, info, root, tree, budget).extract()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise CorruptArchive(name, str(exc)) from exc
    except NotImplementedError as exc:  # a zip version zipfile does not read
        raise UnpackError(name, f"cannot unpack: {shown(str(exc))}") from exc
    except OSError as exc:
        if exc.errno is None:
            raise CorruptArchive(name, str(exc)) from exc
        raise UnpackError(name, f"cannot unpack: {_why(exc)}") from exc


class _ZipMember:
    """One zip entry written where the tree says, with only the executable bit of its mode."""

    def __init__(
        self,
        zipped: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        root: Path,
        tree: _Tree,
        budget: _Budget,
    ) -> None:
        self._zipped = zipped
        self._info = info
        self._root = root
        self._tree = tree
        self._budget = budget
        self._archive = Path(zipped.filename or "").name
        unix = info.create_system == 3  # the mode is only meaningful from a Unix zip
        self._mode = info.external_attr >> 16 if unix else 0

    def extract(self) -> None:
        member, file_type = self._info.filename, stat.S_IFMT(self._mode)
        if self._info.is_dir() or file_type == stat.S_IFDIR:
            path = self._tree.add_directory(member)
            if path is not None:
                (self._root / path).mkdir(parents=True, exist_ok=True)
        elif file_type == stat.S_IFLNK:
            target = os.fsdecode(self._read_link_target())
            self._prepare(self._tree.add_symlink(member, target)).symlink_to(target)
        elif file_type in (0, stat.S_IFREG):
            self._write(self._prepare(self._tree.add_file(member)))
        else:
            raise UnsafeArchive(self._archive, member, "is a special file")

    def _prepare(self, path: str) -> Path:
        """The destination of a non-directory, its folder made and any earlier copy gone."""
        destination = self._root / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(destination):
            destination.unlink()
        return destination

    def _read_link_target(self) -> bytes:
        with self._open() as stream:
            target = _Source(stream, self._archive, self._budget).read(_MAX_PATH + 1)
        if len(target) > _MAX_PATH or b"\0" in target:
            detail = "a symlink target too long or with a NUL byte"
            raise CorruptArchive(self._archive, detail, self._info.filename)
        return target

    def _write(self, destination: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        mode = 0o755 if self._mode & stat.S_IXUSR else 0o644  # the umask may take more away
        with self._open() as stream, open(os.open(destination, flags, mode), "wb") as out:
            source = _Source(stream, self._archive, self._budget)
            while chunk := source.read(_CHUNK):
                out.write(chunk)

    def _open(self) -> IO[bytes]:
        try:
            return self._zipped.open(self._info)
        except (NotImplementedError, RuntimeError) as exc:  # a method or encryption zipfile lacks
            detail = f"cannot unpack member '{shown(self._info.filename)}': {shown(str(exc))}"
            raise UnpackError(self._archive, detail) from exc


def _place(extracted: Path, directory: Path, replaced: Path) -> None:
    """Move each top-level entry of `extracted` into `directory`, replacing what is there.

    Never follows a symlink in `directory`: a name is renamed aside (a symlink
    moves as itself), then the new entry renamed in. On any failure the entries
    already placed are taken back and the replaced ones restored.
    """
    replaced.mkdir()
    placed: list[tuple[str, bool]] = []
    try:
        for name in sorted(os.listdir(extracted)):
            target = directory / name
            had_entry = os.path.lexists(target)
            if had_entry:
                os.rename(target, replaced / name)
            placed.append((name, had_entry))
            os.rename(extracted / name, target)
    except BaseException:
        _take_back(placed, extracted, directory, replaced)
        raise


def _take_back(
    placed: list[tuple[str, bool]], extracted: Path, directory: Path, replaced: Path
) -> None:
    for name, had_entry in reversed(placed):
        try:
            if not os.path.lexists(extracted / name):
                os.rename(directory / name, extracted / name)
            if had_entry:
                os.rename(replaced / name, directory / name)
        except OSError:
            continue  # best effort: the original error is the one to report


def _remove(staging: Path) -> None:
    """Delete the staging folder, including read-only folders of a replaced entry."""

    def make_writable(function: Any, failed: str, _exc_info: object) -> None:
        parent = os.path.dirname(failed)
        if parent.startswith(str(staging)) and function in (os.unlink, os.rmdir):
            try:
                os.chmod(parent, stat.S_IRWXU)
                function(failed)
            except OSError:
                return

    shutil.rmtree(staging, onerror=make_writable)
