"""``purge``: free space in the cache folder by removing the least recently used entries.

``-s/--size GB`` asks for that much free space on the cache's filesystem; entries
go oldest use first (fetch sets an entry's modification time on every use) until
it is there. ``-s 0``, the default, empties the cache. Only the cache's own files
are removed: entries named by a sha512 digest, and part and lock files, none
while a fetch holds its digest's claim (it is writing the part file, or linking
the new entry into its folder; a killed fetch leaves both files behind); anything
else in the folder is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tooltool_client import staging
from tooltool_client.errors import CacheError, UsageError

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")

_ENTRY = re.compile(r"[0-9a-f]{128}")
_STAGED = re.compile(re.escape(staging.PREFIX) + r"([0-9a-f]{128})\.(part|lock)")
GIB = 1024**3


def purge(context: Context) -> bool:
    folder = context.options.cache_folder
    if not folder:
        raise UsageError("please specify the cache folder to be purged (-c)")
    size = context.options.size
    if not 0 <= size < math.inf:  # nan and inf too: no number of bytes
        raise UsageError(f"--size must be a number of GB, 0 or more, not {size}")
    removed, freed = purge_folder(Path(folder), int(size * GIB))
    logger.info("removed %d file(s), %.1f MiB", removed, freed / 1024**2)
    return True


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_frsize * stats.f_bavail


def purge_folder(
    folder: Path, wanted: int, *, free: Callable[[Path], int] = free_bytes
) -> tuple[int, int]:
    """Remove least recently used files until `wanted` bytes are free (0: all of them);
    how many files and bytes went."""
    if not folder.is_dir():
        return 0, 0
    if wanted and free(folder) >= wanted:
        logger.info("no need to clean up: %.1f GiB free", free(folder) / GIB)
        return 0, 0
    removed = freed = 0
    for _, path, size in sorted(_candidates(folder)):
        if _remove(folder, path):
            removed += 1
            freed += size
            logger.info("removed %s to free up space", path.name)
        if wanted and free(folder) >= wanted:
            break
    return removed, freed


def _candidates(folder: Path) -> Iterator[tuple[float, Path, int]]:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise CacheError(f"cache folder '{folder}' cannot be read: {exc.strerror}") from None
    for entry in entries:
        if not (_ENTRY.fullmatch(entry.name) or _STAGED.fullmatch(entry.name)):
            continue
        with contextlib.suppress(OSError):
            stat = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False):
                yield stat.st_mtime, Path(entry.path), stat.st_size


def _remove(folder: Path, path: Path) -> bool:
    staged = _STAGED.fullmatch(path.name)
    digest = staged.group(1) if staged is not None else path.name
    with staging.claim_if_free(folder, digest) as is_free:
        if not is_free:
            return False  # a fetch is writing or placing it
        if staged is not None and staged.group(2) == "lock":
            return True  # the claim, released, removes it
        try:
            path.unlink()
        except OSError:
            logger.info("could not remove %s", path.name)
            return False
    return True
