"""``upload``: the files of a manifest to the first server, the legacy client's flow.

1. ``POST upload[?region=]`` with the batch: ``{"message", "files": {filename:
   {"size", "digest", "algorithm", "visibility"}}}``. The server answers a
   ``put_url`` for each file it lacks.
2. One ``PUT`` per ``put_url``, ``--jobs`` at a time, the file streamed from
   disk with ``Content-Type: application/octet-stream`` and its
   ``Content-Length``, and no credentials (the URL is signed). Any status but
   200 is a failure of that file; files whose URL the store refused (403: it
   may have expired while earlier files were sent) are posted once more, in a
   batch of their own, and sent with the fresh URLs.
3. ``GET upload/complete/sha512/<digest>`` for each uploaded file, waiting
   ``X-Retry-After`` seconds on a 409 (the legacy service's "not yet"), a
   bounded number of times. As in the legacy client, a server that could not be
   told is no failure: it finds the upload at its next pass.

Before anything is sent: ``--message`` is required, and every record must have
a visibility and be present and valid in the current folder. Each file gets one
line: ``uploaded``, ``already on the server`` or ``failed (<reason>)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tooltool_client import manifest
from tooltool_client.api import Server, problem
from tooltool_client.digests import matches
from tooltool_client.errors import ClientError, ServerError, UsageError
from tooltool_client.manifest import FileRecord
from tooltool_client.progress import human_bytes
from tooltool_client.transport import Transport

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")

COMPLETE_ATTEMPTS = 5
COMPLETE_MAX_WAIT = 120  # seconds; the legacy service asked for at most its URLs' lifetime
_STORE_ERROR_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")


@dataclass(frozen=True)
class Outcome:
    """What became of one file."""

    filename: str
    how: str
    failed: bool = False
    refused_url: str = ""  # why the store refused the URL (it may have expired)


class UrlRefused(ServerError):
    """The store refused a signed URL (403): expired, most likely."""


def upload(context: Context) -> bool:
    options = context.options
    if not options.message:
        raise UsageError("upload command requires a message")
    records = manifest.load(context.manifest)
    check(records, context.directory, options.jobs)
    server = context.servers[0]
    files = post_batch(server, options.message, records, options.region)
    uploader = Uploader(server, context.transport, context.directory)
    outcomes = uploader.run(records, files, options.jobs, final=False)
    renew = {outcome.filename for outcome in outcomes if outcome.refused_url}
    if renew:
        # URLs live UPLOAD_EXPIRES_IN seconds (60 by default) and --jobs bounds the PUTs
        # under way, so the last files of a long upload may start late: one more batch
        # of those files gets fresh URLs.
        again = [record for record in records if record.filename in renew]
        files = post_batch(server, options.message, again, options.region)
        outcomes = [outcome for outcome in outcomes if outcome.filename not in renew]
        outcomes += uploader.run(again, files, options.jobs, final=True)
    failures = {outcome.filename for outcome in outcomes if outcome.failed}
    failed = [record.filename for record in records if record.filename in failures]
    if failed:
        logger.error("The following files failed to upload: '%s'", "', '".join(failed))
    return not failed


def check(records: Sequence[FileRecord], directory: Path, jobs: int) -> None:
    """What the legacy client checks before an upload; :class:`ClientError` if not so."""
    if not records:
        raise ClientError("the manifest lists no files to upload")
    unset = [record.filename for record in records if record.visibility is None]
    if unset:
        raise ClientError(
            "All files in a manifest for upload must have a visibility set"
            f" (none on: {', '.join(unset)})"
        )
    with ThreadPoolExecutor(max(1, min(jobs, len(records))), thread_name_prefix="check") as pool:
        problems = list(pool.map(lambda record: _problem(directory, record), records))
    for found in problems:
        if found:
            logger.error("%s", found)
    if any(problems):
        raise ClientError("manifest is invalid")


def _problem(directory: Path, record: FileRecord) -> str | None:
    path = directory / record.filename
    if not path.is_file():
        return f"{record.filename} is absent"
    if not matches(path, record.size, record.digest):
        return f"{record.filename} is present and invalid"
    return None


def post_batch(
    server: Server, message: str, records: Sequence[FileRecord], region: str | None
) -> Mapping[str, Any]:
    """``POST upload``: the server's entry for each file of the batch, by filename."""
    batch = {
        "message": message,
        "files": {
            record.filename: {
                "size": record.size,
                "digest": record.digest,
                "algorithm": record.algorithm,
                "visibility": record.visibility,
            }
            for record in records
        },
    }
    total = sum(record.size for record in records)
    logger.info("uploading %d file(s), %s", len(records), human_bytes(total))
    status, _, body = server.call("POST", "upload", data=batch, region=region)
    if status != 200:
        raise ServerError(f"the server refused the upload: {problem(status, body)}")
    try:
        files = json.loads(body)["result"]["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ServerError("the server answered the upload with something unexpected") from None
    return files


@dataclass
class Uploader:
    """Sends the bytes of the files a batch asked for, and tells the server."""

    server: Server
    transport: Transport
    directory: Path
    sleep: Callable[[float], None] = time.sleep

    def run(
        self, records: Sequence[FileRecord], files: Mapping[str, Any], jobs: int, *, final: bool
    ) -> list[Outcome]:
        """Every record's outcome, each logged as it comes (unless a refused URL is to be
        renewed: not `final`)."""
        outcomes = []
        with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="upload") as pool:
            futures = [
                pool.submit(self.one, record, files.get(record.filename)) for record in records
            ]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes.append(outcome)
                    if outcome.refused_url and not final:
                        logger.info(
                            "%s: %s; asking for a new URL", outcome.filename, outcome.refused_url
                        )
                        continue
                    log = logger.error if outcome.failed else logger.info
                    log("%s: %s", outcome.filename, outcome.how)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return outcomes

    def one(self, record: FileRecord, entry: object) -> Outcome:
        if not isinstance(entry, dict):
            return Outcome(record.filename, "failed (the server's answer does not list it)", True)
        if "put_url" not in entry:
            return Outcome(record.filename, "already on the server")
        url = entry["put_url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return Outcome(record.filename, "failed (the server gave no usable URL)", True)
        try:
            self.put(record, url)
        except UrlRefused as exc:
            return Outcome(record.filename, f"failed ({exc})", True, refused_url=str(exc))
        except ClientError as exc:
            return Outcome(record.filename, f"failed ({exc})", True)
        self.complete(record)
        return Outcome(record.filename, "uploaded")

    def put(self, record: FileRecord, url: str) -> None:
        """The file's bytes to the signed URL, streamed; :class:`ClientError` unless 200."""
        try:
            stream = open(self.directory / record.filename, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ClientError(f"cannot be read: {exc.strerror}") from None
        with stream:
            if os.fstat(stream.fileno()).st_size != record.size:
                raise ClientError("the file changed since it was checked")
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(record.size),
            }
            status, answer_headers, body = self.transport.request(
                "PUT", url, headers=headers, body=stream, limit=64 * 1024
            )
        if status != 200:
            refused = UrlRefused if status == 403 else ServerError
            raise refused(_store_refusal(status, answer_headers, body))

    def complete(self, record: FileRecord) -> None:
        """``GET upload/complete/sha512/<digest>``; a warning when the server cannot be told."""
        path = f"upload/complete/{record.algorithm}/{record.digest}"
        for _ in range(COMPLETE_ATTEMPTS):
            try:
                status, headers, body = self.server.call("GET", path)
            except ServerError as exc:
                reason = str(exc)
                break
            if status in (200, 202):
                return
            reason = str(problem(status, body))
            if status != 409:
                break
            wait = _retry_after(headers)
            logger.info("%s: waiting %d seconds for the server to accept it", record.filename, wait)
            self.sleep(wait)
        logger.warning(
            "%s: the server was not told the upload is complete (%s); it finds it at its next pass",
            record.filename,
            reason,
        )


def _retry_after(headers: Mapping[str, str]) -> int:
    """The legacy ``X-Retry-After`` (60 when absent, as the legacy client read it), capped."""
    try:
        wait = int(headers.get("X-Retry-After", "60"))
    except ValueError:
        wait = 60
    return max(0, min(wait, COMPLETE_MAX_WAIT))


def _store_refusal(status: int, headers: Mapping[str, str], body: bytes) -> str:
    """Why the store refused a PUT: its status and error code, never the body itself (an
    S3 signature error echoes the request it expected)."""
    if headers.get("Content-Type", "").startswith("application/json"):
        return f"the store answered {problem(status, body)}"
    code = _STORE_ERROR_CODE.search(body)
    return f"the store answered {status}" + (f" ({code.group(1).decode()})" if code else "")
