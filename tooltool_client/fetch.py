"""``fetch``: every file of a manifest into the manifest's folder, verified.

Files already present and valid are kept; then the cache is tried; the rest are
resolved in one request (``POST resolve``, per file ``GET sha512/<digest>`` on a
server without it) and downloaded in parallel (``--jobs``), each streamed and
hashed as it arrives, resumed after a cut, and retried with backoff over the
``--url`` list. Archives marked ``unpack`` are unpacked last, in manifest order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tooltool_client import staging
from tooltool_client.api import Location, Server
from tooltool_client.cache import Cache, is_own, place
from tooltool_client.digests import matches
from tooltool_client.download import BlobRefused, Download, WrongSize
from tooltool_client.errors import (
    CacheError,
    ClientError,
    IntegrityError,
    ProblemAnswer,
    ServerError,
    StagingError,
)
from tooltool_client.manifest import FileRecord
from tooltool_client.progress import LogLines, Progress, human_bytes
from tooltool_client.retry import RetryPolicy
from tooltool_client.transport import Transport

logger = logging.getLogger("tooltool")

RESOLVE_BATCH = 1000  # the gateway's limit per request
Unpacker = Callable[[Path, Path], None]


class Cancelled(ClientError):
    """The fetch was interrupted."""


class FetchFailed(ClientError):
    """One file could not be fetched from any server."""


@dataclass(frozen=True)
class Failure:
    """A file that could not be fetched (or unpacked), and why."""

    filename: str
    reason: str


@dataclass
class Fetcher:
    """Fetches manifest records into `directory` (see the module's docstring)."""

    servers: Sequence[Server]
    transport: Transport
    directory: Path
    cache: Cache | None = None
    jobs: int = 8
    region: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: Progress = field(default_factory=LogLines)
    unpacker: Unpacker | None = None
    sleep: Callable[[float], None] | None = None  # None: wait, unless cancelled meanwhile
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _without_cache: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, records: Sequence[FileRecord]) -> list[Failure]:
        """Fetch `records`; the files that failed, and why (empty: all went well)."""
        failures: list[Failure] = []
        with ThreadPoolExecutor(max(1, self.jobs), thread_name_prefix="fetch") as pool:
            try:
                needed = self._local(pool, records, failures)
                self._remote(pool, needed, failures)
            except KeyboardInterrupt:
                self._cancelled.set()
                self.transport.interrupt()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                self.progress.close()
        # In manifest order, whichever finished first: the same failures, the same lines.
        order = {record.filename: index for index, record in enumerate(records)}
        failures.sort(key=lambda failure: order[failure.filename])
        failed = {failure.filename for failure in failures}
        for record in records:
            if record.unpack and record.filename not in failed:
                failures.extend(self._unpack(record))
        return failures

    def _local(
        self, pool: ThreadPoolExecutor, records: Sequence[FileRecord], failures: list[Failure]
    ) -> list[FileRecord]:
        """Keep what is present and valid, take what the cache holds; the rest."""
        needed = []
        for record, outcome in zip(records, pool.map(self._from_disk, records), strict=True):
            if isinstance(outcome, ClientError):
                failures.append(Failure(record.filename, str(outcome)))
            elif outcome is None:
                needed.append(record)
            else:
                self.progress.finished(record.filename, outcome)
        return needed

    def _from_disk(self, record: FileRecord) -> str | ClientError | None:
        target = self.directory / record.filename
        if target.is_dir() and not target.is_symlink():
            return ClientError(f"'{target}' is a folder")
        if os.path.lexists(target):
            if matches(target, record.size, record.digest):
                return "present and valid"
            logger.info("%s is present but invalid: it will be replaced", record.filename)
        if self.cache is not None:
            try:
                if _from_cache(self.cache, target, record):
                    return "from the cache"
            except ClientError as exc:
                return exc
        return None

    def _remote(
        self, pool: ThreadPoolExecutor, needed: Sequence[FileRecord], failures: list[Failure]
    ) -> None:
        if not needed:
            return
        first = self._resolve([record.digest for record in needed])
        by_digest: dict[str, list[FileRecord]] = {}
        for record in needed:
            by_digest.setdefault(record.digest, []).append(record)
        self.progress.start(len(by_digest), sum(group[0].size for group in by_digest.values()))
        futures = {
            pool.submit(self._download, group[0], first.get(digest)): group
            # Largest first: the last files to finish are then small ones, so the end of
            # a fetch is not one big file downloading and hashing alone.
            for digest, group in sorted(by_digest.items(), key=lambda item: -item[1][0].size)
        }
        for future in as_completed(futures):
            group = futures[future]
            try:
                how = future.result()
            except ClientError as exc:
                failures.extend(Failure(record.filename, str(exc)) for record in group)
                continue
            self.progress.finished(group[0].filename, how)
            for record in group[1:]:  # the same bytes under another name: a copy
                source, target = (
                    self.directory / group[0].filename,
                    self.directory / record.filename,
                )
                try:
                    _place(source, target, link=False)
                except ClientError as exc:
                    failures.append(Failure(record.filename, str(exc)))
                    continue
                self.progress.finished(record.filename, f"copied from {group[0].filename}")

    def _resolve(self, digests: Sequence[str]) -> dict[str, Location | ProblemAnswer]:
        """Every digest's URL from the first server in one request per 1,000; nothing
        when it has no batch endpoint or fails (files are then located one by one)."""
        unique = list(dict.fromkeys(digests))
        found: dict[str, Location | ProblemAnswer] = {}
        server = self.servers[0]
        for start in range(0, len(unique), RESOLVE_BATCH):
            batch = unique[start : start + RESOLVE_BATCH]
            try:
                answers = server.resolve(batch, self.region)
            except ClientError as exc:
                logger.info(
                    "%s could not resolve the manifest (%s): asking file by file",
                    server.base_url,
                    exc,
                )
                return found
            if answers is None:
                logger.debug("%s has no batch resolve: asking file by file", server.base_url)
                return found
            found.update(zip(batch, answers, strict=True))
        return found

    def _download(self, record: FileRecord, first: Location | ProblemAnswer | None) -> str:
        """Through the cache, if any; once the cache cannot be used (its folder cannot be
        created or written, its disk is full), without it for the rest of the run, after
        one warning. The cache only saves downloads: a CI job should not fail because
        its cache disk filled up, and the legacy client went on without it too."""
        cache = None if self._without_cache.is_set() else self.cache
        if cache is not None:
            try:
                return self._download_into(cache, record, first)
            except (CacheError, StagingError) as exc:  # part and lock files are in the cache
                self._stop_caching(cache, exc)
        return self._download_into(None, record, first)

    def _stop_caching(self, cache: Cache, exc: ClientError) -> None:
        with self._lock:
            if not self._without_cache.is_set():
                logger.warning(
                    "cache folder '%s' cannot be used (%s): fetching without it", cache.folder, exc
                )
            self._without_cache.set()

    def _download_into(
        self, cache: Cache | None, record: FileRecord, first: Location | ProblemAnswer | None
    ) -> str:
        folder = cache.folder if cache is not None else self.directory
        if cache is not None:
            cache.ensure_folder()
        target = self.directory / record.filename

        def waiting() -> None:
            logger.info("%s: waiting for another fetch of the same file", record.filename)

        with staging.claim(
            folder, record.digest, on_wait=waiting, check=self._check_cancelled
        ) as part:
            # Another process may have fetched it while we waited.
            if cache is not None and _from_cache(cache, target, record):
                return "from the cache"
            started = time.monotonic()
            download = Download(
                self.transport,
                size=record.size,
                digest=record.digest,
                part=part,
                on_bytes=self._advance,
            )
            server = self._download_with_retries(download, record, first)
            if cache is not None:
                _place(cache.add(part, record.digest), target)
            else:
                try:
                    os.replace(part, target)
                except OSError as exc:
                    raise _unplaced(target, exc) from None
        seconds = time.monotonic() - started
        return f"fetched {human_bytes(record.size)} from {server.base_url} in {seconds:.1f} s"

    def _download_with_retries(
        self, download: Download, record: FileRecord, first: Location | ProblemAnswer | None
    ) -> Server:
        errors: list[str] = []
        refused: set[str] = set()  # servers that answered no for good (400, 403, 404)
        for round_number in range(self.retry.attempts):
            for index, server in enumerate(self.servers):
                if server.base_url in refused:
                    continue
                self._check_cancelled()
                batch = first if round_number == 0 and index == 0 else None
                try:
                    self._attempt(server, download, record, batch)
                    return server
                except ProblemAnswer as exc:
                    errors.append(f"{server.base_url}: {exc}")
                    if exc.status < 500 and exc.status not in (408, 429):
                        refused.add(server.base_url)
                except WrongSize as exc:  # another file: final for this server, as a 404
                    errors.append(f"{server.base_url}: {exc}")
                    refused.add(server.base_url)
                except (ServerError, IntegrityError) as exc:
                    errors.append(f"{server.base_url}: {exc}")
                    logger.info("%s: %s (from %s)", record.filename, exc, server.base_url)
            if len(refused) == len(self.servers) or round_number == self.retry.attempts - 1:
                break
            self._pause(self.retry.delay(round_number))
        raise FetchFailed(_summary(errors))

    def _attempt(
        self,
        server: Server,
        download: Download,
        record: FileRecord,
        batch: Location | ProblemAnswer | None,
    ) -> None:
        """One try at `server`: with the batch resolve's answer if there is one, else a
        fresh location. A batch URL refused is located again at once: it expired while
        the files before it downloaded, which is no failure worth a backoff."""
        if isinstance(batch, ProblemAnswer):
            raise batch
        if batch is not None:
            try:
                _run(server, download, batch)
            except BlobRefused as exc:
                logger.info("%s: %s (from the batch resolve): located again", record.filename, exc)
            else:
                return
        _run(server, download, server.locate(record.digest, self.region))

    def _pause(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self._cancelled.wait(seconds)

    def _advance(self, count: int) -> None:
        self._check_cancelled()
        self.progress.advance(count)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled("interrupted")

    def _unpack(self, record: FileRecord) -> list[Failure]:
        if self.unpacker is None:
            return [Failure(record.filename, "unpacking is not available")]
        try:
            self.unpacker(self.directory / record.filename, self.directory)
        except ClientError as exc:
            return [Failure(record.filename, str(exc))]
        self.progress.finished(record.filename, "unpacked")
        return []


def _run(server: Server, download: Download, location: Location) -> None:
    """`download` from `location`, with `server`'s credentials only if it is the server."""
    headers = server.auth_headers("GET", location.url) if location.needs_credentials else {}
    download.run(location, headers)


def _from_cache(cache: Cache, target: Path, record: FileRecord) -> bool:
    """The record's verified cache entry placed at `target`; False when there is none
    (or it was purged meanwhile). Linked if it is this user's; another user's (a shared
    cache) is theirs to change after it was verified, through any link to it: it is
    copied, and the copy verified (False, and no copy left, if it does not match)."""
    entry = cache.verified(record.size, record.digest)
    if entry is None:
        return False
    own = is_own(entry)
    try:
        place(entry, target, link=own)
    except FileNotFoundError:  # purged meanwhile: to be fetched
        return False
    except OSError as exc:
        raise _unplaced(target, exc) from None
    if own or matches(target, record.size, record.digest):
        return True
    with contextlib.suppress(OSError):
        target.unlink()
    return False


def _place(source: Path, target: Path, *, link: bool = True) -> None:
    """:func:`~tooltool_client.cache.place`, failing as one line (the working folder
    cannot be written), never as a part file's error: that would blame the cache."""
    try:
        place(source, target, link=link)
    except OSError as exc:
        raise _unplaced(target, exc) from None


def _unplaced(target: Path, exc: OSError) -> ClientError:
    return ClientError(f"'{target}' cannot be written: {exc.strerror or exc}")


def _summary(errors: Sequence[str]) -> str:
    """The distinct errors, the last ones last (bounded: a line, not a log)."""
    distinct = list(dict.fromkeys(errors))
    shown = distinct[-3:]
    more = len(distinct) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more else "")
