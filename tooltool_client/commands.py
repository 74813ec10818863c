"""The subcommands, by name: each takes the :class:`~tooltool_client.cli.Context` and
says whether it succeeded. Those that need the network live in their own modules,
imported when run."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tooltool_client import manifest
from tooltool_client.cache import Cache
from tooltool_client.digests import matches
from tooltool_client.errors import ClientError, UsageError
from tooltool_client.progress import Bar, LogLines, Progress
from tooltool_client.retry import RetryPolicy

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")


def list_files(context: Context) -> bool:
    """One line per record: P if present, V if valid, then the name (legacy format)."""
    for record in manifest.load(context.manifest):
        path = context.directory / record.filename
        present = path.exists()
        valid = present and matches(path, record.size, record.digest)
        print(
            f"{'P' if present else '-'}\t{'V' if valid else '-'}\t{record.filename}",
            file=context.stdout,
        )
    return True


def validate(context: Context) -> bool:
    """Whether every record is present and valid; says which are not."""
    ok = True
    for record in manifest.load(context.manifest):
        path = context.directory / record.filename
        if not path.exists():
            logger.error("%s is absent", record.filename)
            ok = False
        elif not matches(path, record.size, record.digest):
            logger.error("%s is present and invalid", record.filename)
            ok = False
    return ok


def fetch(context: Context) -> bool:
    from tooltool_client.fetch import Fetcher

    records = manifest.load(context.manifest)
    if context.args:
        wanted = set(context.args)
        unknown = sorted(wanted - {record.filename for record in records})
        if unknown:
            raise UsageError(f"not in the manifest: {', '.join(unknown)}")
        records = [record for record in records if record.filename in wanted]
    options = context.options
    fetcher = Fetcher(
        servers=context.servers,
        transport=context.transport,
        directory=context.directory,
        cache=Cache(Path(options.cache_folder)) if options.cache_folder else None,
        jobs=options.jobs,
        region=options.region,
        retry=RetryPolicy(base=context.timing.retry_seconds),
        progress=_progress(context),
        unpacker=_unpack,
    )
    failures = fetcher.fetch(records)
    for failure in failures:
        logger.error("%s: %s", failure.filename, failure.reason)
    if failures:
        logger.error("The following files failed: '%s'", "', '".join(f.filename for f in failures))
    return not failures


def _progress(context: Context) -> Progress:
    quiet = context.options.loglevel > logging.INFO
    stream = context.stderr
    if not quiet and stream is sys.stderr and stream.isatty():
        return Bar(stream)
    return LogLines()


def _unpack(archive: Path, directory: Path) -> None:
    from tooltool_client.unpack import UnpackError, unpack_archive

    try:
        unpack_archive(archive, directory=directory)
    except UnpackError as exc:  # reported under the file's name already
        raise ClientError(exc.message) from None


def _elsewhere(module: str, function: str) -> Callable[[Context], bool]:
    def run(context: Context) -> bool:
        command: Callable[[Context], bool] = getattr(
            importlib.import_module(f"tooltool_client.{module}"), function
        )
        return command(context)

    return run


REGISTRY: dict[str, Callable[[Context], bool]] = {
    "list": list_files,
    "validate": validate,
    "fetch": fetch,
    "purge": _elsewhere("purge", "purge"),
    "add": _elsewhere("add", "add"),
    "upload": _elsewhere("upload", "upload"),
    "change-visibility": _elsewhere("manage", "change_visibility"),
    "delete": _elsewhere("manage", "delete"),
    "token": _elsewhere("token", "token"),
}
