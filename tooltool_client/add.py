"""``add``: hash files and list them in the manifest, as the legacy client does.

Each file becomes a record named by its basename, with its size and sha512 and
the ``--visibility``, ``--version`` and ``--unpack`` given. A record equal to
one already listed (the legacy comparison: name, size, digest, algorithm,
version and visibility) is "already in the manifest"; another file under a name
already listed is refused, unless it is given with its folder
(``build/clang.tar.xz``, ``./clang.tar.xz``): then its record replaces the one
listed, as the legacy client's did (it compared the argument itself with the
listed names), so scripts that update a manifest from a build folder keep
working. Being refused or already listed makes the command fail, the other
files being added all the same. The new records come first, then the old ones in their
order (the legacy writer's order); the manifest is created when absent and
written whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from tooltool_client import manifest
from tooltool_client.digests import file_digest
from tooltool_client.errors import ClientError, UsageError
from tooltool_client.manifest import FileRecord

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")


def add(context: Context) -> bool:
    if not context.args:
        raise UsageError("add command requires at least one file")
    path = context.manifest
    existing = manifest.load(path) if path.exists() else []
    options = context.options
    hashed = _hash_all(context.directory, context.args, options.jobs)
    ok = True
    added: list[FileRecord] = []
    for arg, outcome in zip(context.args, hashed, strict=True):
        if isinstance(outcome, ClientError):
            logger.error("%s", outcome)
            ok = False
            continue
        record = FileRecord(
            filename=Path(arg).name,
            size=outcome[0],
            digest=outcome[1],
            unpack=options.unpack,
            visibility=options.visibility,
            version=options.version,
        )
        if _admit(record, existing, added, replaces=Path(arg).name != arg):
            added.append(record)
            logger.info("%s: added to the manifest", record.filename)
        else:
            ok = False
    if added:
        manifest.save(path, [*added, *existing])
    return ok


def _hash_all(
    directory: Path, args: Sequence[str], jobs: int
) -> list[tuple[int, str] | ClientError]:
    """Every file's size and digest (hashed in parallel: hashlib releases the GIL)."""
    with ThreadPoolExecutor(max(1, min(jobs, len(args))), thread_name_prefix="add") as pool:
        return list(pool.map(lambda arg: _hash(directory, arg), args))


def _hash(directory: Path, arg: str) -> tuple[int, str] | ClientError:
    try:
        manifest.check_filename(Path(arg).name)
    except ClientError as exc:
        return exc
    path = directory / arg
    if path.is_dir():
        return ClientError(f"'{arg}' is a folder, not a file")
    try:
        return file_digest(path)
    except OSError as exc:
        return ClientError(f"'{arg}' cannot be read: {exc.strerror}")


def _admit(
    record: FileRecord, existing: list[FileRecord], added: Sequence[FileRecord], *, replaces: bool
) -> bool:
    """Whether `record` may join the manifest (an `existing` record it `replaces` is
    removed); says why not."""
    for other in [*existing, *added]:
        if other.filename != record.filename:
            continue
        if _same(record, other):
            logger.info("%s: file already in manifest", record.filename)
        elif replaces and any(other is listed for listed in existing):
            existing.remove(other)
            logger.info("%s: replaces the file listed under that name", record.filename)
            return True
        else:
            logger.error("manifest already contains a different file named %s", record.filename)
        return False
    return True


def _same(one: FileRecord, other: FileRecord) -> bool:
    """The legacy record comparison (``unpack`` is not part of it)."""
    return (one.filename, one.size, one.digest, one.algorithm, one.version, one.visibility) == (
        other.filename,
        other.size,
        other.digest,
        other.algorithm,
        other.version,
        other.visibility,
    )
