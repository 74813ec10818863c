"""Where a download lands before it is whole: ``.tooltool-<digest>.part`` in a folder
(the cache, or the manifest's folder without one), claimed by one process at a time.

The claim is an exclusive ``flock`` on ``.tooltool-<digest>.lock`` beside it, so
processes sharing a cache fetch each file once: the others wait, then find the
file in place. The part file survives a killed process, and the next claimant
resumes from its last byte. The lock file is removed by the holder when done; a
waiter that then holds a lock on a removed file notices (its inode is no longer
the path's) and claims again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tooltool_client.errors import unwritable

logger = logging.getLogger(__name__)

PREFIX = ".tooltool-"
WAIT_NOTICE_SECONDS = 2.0


def part_path(folder: Path, digest: str) -> Path:
    return folder / f"{PREFIX}{digest}.part"


def lock_path(folder: Path, digest: str) -> Path:
    return folder / f"{PREFIX}{digest}.lock"


@contextlib.contextmanager
def claim(
    folder: Path,
    digest: str,
    *,
    on_wait: Callable[[], None] | None = None,
    check: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """Holds the digest's claim in `folder`; yields its part file's path.
    :class:`~tooltool_client.errors.StagingError` when the lock cannot be written.
    While another holds it, `on_wait` is called once after a while, and `check` at every
    try: what it raises ends the wait (an interrupted fetch must not wait for another's)."""
    path = lock_path(folder, digest)
    try:
        fd = _acquire(path, on_wait, check)
    except OSError as exc:
        raise unwritable(path, exc) from None
    try:
        yield part_path(folder, digest)
    finally:
        with contextlib.suppress(OSError):  # gone, or the folder turned read-only
            path.unlink()
        os.close(fd)


def _acquire(
    path: Path, on_wait: Callable[[], None] | None, check: Callable[[], None] | None
) -> int:
    waited_since: float | None = None
    while True:
        if check is not None:
            check()
        fd = _try_lock(path)
        if fd is not None:
            return fd
        now = time.monotonic()
        if waited_since is None:
            waited_since = now
        elif on_wait is not None and now - waited_since >= WAIT_NOTICE_SECONDS:
            on_wait()
            on_wait = None
        time.sleep(0.05)


def _try_lock(path: Path) -> int | None:
    """The lock file at `path`, created if need be and held exclusively; None while
    another holds it. A lock file its holder removed after we opened it is no lock:
    tried again at once."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return None
        if is_named(path, os.fstat(fd)):
            return fd
        os.close(fd)


def is_named(path: Path, opened: os.stat_result) -> bool:
    """Whether `path` (not followed) is still the file `opened` describes: another may
    have removed or renamed over it since it was opened."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


@contextlib.contextmanager
def claim_if_free(folder: Path, digest: str) -> Iterator[bool]:
    """Holds the digest's claim if nobody else does (True), without waiting; False too
    when the lock cannot be made (the folder read-only, a folder or symlink at its name)."""
    path = lock_path(folder, digest)
    try:
        fd = _try_lock(path)
    except OSError:
        fd = None
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
