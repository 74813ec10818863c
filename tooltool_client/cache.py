"""The content-addressed cache (``--cache-folder``): ``<folder>/<digest>``, the legacy
client's layout, so both clients can share one folder.

An entry is only ever created whole (a verified part file renamed into place) and
is verified again (size, then sha512) each time it is used; one that does not
match is removed. Using an entry sets its modification time, which ``purge``
reads as its last use. Entries are hard-linked into the manifest's folder, or
copied where a link cannot be made (another filesystem).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from pathlib import Path

from tooltool_client.digests import CHUNK, matches
from tooltool_client.errors import CacheError

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class Cache:
    """A cache folder; created (mode 0700) on first write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entry(self, digest: str) -> Path:
        return self.folder / digest

    def verified(self, size: int, digest: str) -> Path | None:
        """The entry for these bytes if it holds them (its use recorded); a corrupt
        entry is removed."""
        path = self.entry(digest)
        try:
            # Not followed: a symlink is no entry (what it points at, its owner may change
            # once it is linked into the working folder), nor a FIFO.
            if not stat.S_ISREG(path.lstat().st_mode):
                return None
        except OSError:
            return None
        if matches(path, size, digest):
            touch(path)
            return path
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def ensure_folder(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot be created: {exc.strerror}") from None

    def add(self, part: Path, digest: str) -> Path:
        """Move a verified part file into the cache (whole: a rename)."""
        path = self.entry(digest)
        try:
            # Writable by its owner only (a umask of 002 leaves it to the group): an entry is
            # linked into working folders, where others must not change it.
            os.chmod(part, stat.S_IMODE(os.stat(part).st_mode) & ~_OTHERS_WRITE)
            os.replace(part, path)
        except OSError as exc:
            raise CacheError(f"cannot be written: {exc.strerror}") from None
        touch(path)
        return path


def is_own(path: Path) -> bool:
    """Whether the file at `path` is this user's alone: owned, and no one else may write it."""
    try:
        found = path.stat()
    except OSError:
        return False
    return found.st_uid == os.geteuid() and not found.st_mode & _OTHERS_WRITE


def touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def place(source: Path, target: Path, *, link: bool = True) -> None:
    """Make `target` hold `source`'s bytes, whole: linked or copied to a temporary name
    beside it, then renamed over whatever was there."""
    temporary = target.with_name(
        f".tooltool-{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    try:
        with contextlib.suppress(FileNotFoundError):  # left by a killed fetch, or planted
            temporary.unlink()
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(source, temporary)
        except OSError:
            # Created here ("x"): never written through a symlink planted at its name.
            with open(source, "rb") as reading, open(temporary, "xb") as writing:
                shutil.copyfileobj(reading, writing, CHUNK)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
