"""A whole indexer pass over one pending upload against hashlib's own sha512, side by side.

Each row is a ratio to plain hashlib.sha512 over the same bytes in memory, the
median of rounds that alternate every row, so all see the same machine load:

- the local store (its copies are hard links);
- SeaweedFS (started here on loopback), the staged bytes pinned by a version
  (a versioned bucket: hashed and copied by version id, one server-side copy);
- SeaweedFS, pinned by an expired URL (the record's PUT URLs expired past the
  indexer's margin: hashed and copied in place, one copy);
- SeaweedFS, unpinned (a private copy verified, then copied: two copies);

and, to tell where a pass's time goes, SeaweedFS's streamed hash alone and one
SeaweedFS server-side copy alone. Each measurement follows a hashlib run of
its own, and its ratio is to that run (a shared machine's load changes both);
a pass starts with the staged bytes written back to disk, and is checked to
take the copies its row names. ``--json`` prints the rows as a JSON list
instead of the table.

    .venv/bin/python bench/bench_verify.py [--size-mib 256] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.digests import CHUNK_SIZE, hash_stream_read_ahead
from indexer.intake import LATE_PUT, Pending, new_staging_key
from indexer.job import Indexer
from indexer.s3_store import S3Store
from indexer.schema import blob_key, index_key
from indexer.stores import Regions, Store
from tests.conftest import SeaweedFS, make_local_store, start_seaweedfs, stop_seaweedfs
from tests.recording_store import RecordingStore

URL_LIFETIME = 60  # the gateway's default UPLOAD_EXPIRES_IN


@dataclass(frozen=True)
class Row:
    """One measured thing: `prepare` sets it up, untimed; `run` is what is timed."""

    name: str
    prepare: Callable[[], object]
    run: Callable[[], object]
    copies: int | None = None  # server-side copies a pass takes, for the pass rows


def raw_hashlib(data: bytes) -> float:
    started = time.perf_counter()
    hasher = hashlib.sha512()
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK_SIZE):
        hasher.update(view[offset : offset + CHUNK_SIZE])
    hasher.hexdigest()
    return time.perf_counter() - started


def stage(store: Store, data: bytes, digest: str, *, is_expired: bool) -> None:
    """A pending upload with its bytes staged, the file not yet stored; its URLs expired
    past the margin, or still valid."""
    store.delete(blob_key(digest), every_version=True)
    store.delete(index_key(digest), every_version=True)
    staging = new_staging_key(digest)
    store.put(staging, data)
    created = time.time() - (URL_LIFETIME + 2 * LATE_PUT if is_expired else 0)
    pending = Pending(
        digest=digest,
        size=len(data),
        visibility="public",
        batch_id=1,
        filenames=("bench.bin",),
        author="bench",
        region=store.region,
        staging_key=staging,
        created=created,
        put_url_expires=created + URL_LIFETIME,
    )
    store.put(pending.key, pending.to_json())


def pass_row(name: str, store: Store, data: bytes, digest: str, *, copies: int) -> Row:
    """A whole pass over one pending upload: verification and copy into place, index
    object, catalog, clean-up (no consistency check, no site). "expired" in the name:
    the upload's URLs expired past the margin."""

    def run() -> None:
        recording = RecordingStore(store)
        report = Indexer(Regions([recording])).run_once(check=False)
        assert report.indexed == [digest], report.summary()
        taken = recording.keys("copy")
        assert len(taken) == copies, f"expected {copies} copies, took {taken}"

    is_expired = "expired" in name
    return Row(name, lambda: stage(store, data, digest, is_expired=is_expired), run, copies)


def streamed_hash(store: Store, key: str, digest: str) -> Callable[[], None]:
    def run() -> None:
        with store.open(key) as stream:
            assert hash_stream_read_ahead(stream).digest == digest

    return run


def rows(root: Path, weed: SeaweedFS, data: bytes, digest: str) -> list[Row]:
    local = make_local_store(root / "local")
    versioned = S3Store(weed.client(), weed.new_bucket(), region="us-east-1")
    versioned.client.put_bucket_versioning(
        Bucket=versioned.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    plain = S3Store(weed.client(), weed.new_bucket(), region="us-east-1")
    plain.put("bench/staged", data)
    return [
        pass_row("pass, local store", local, data, digest, copies=2),
        pass_row("pass, SeaweedFS pinned by version", versioned, data, digest, copies=1),
        pass_row("pass, SeaweedFS pinned by expired URL", plain, data, digest, copies=1),
        pass_row("pass, SeaweedFS unpinned", plain, data, digest, copies=2),
        Row(
            "streamed hash alone, SeaweedFS",
            lambda: None,
            streamed_hash(plain, "bench/staged", digest),
        ),
        Row(
            "one server-side copy alone, SeaweedFS",
            lambda: plain.delete("bench/copied"),
            lambda: plain.copy("bench/staged", "bench/copied"),
        ),
    ]


def timed(row: Row, data: bytes) -> tuple[float, float]:
    """hashlib's seconds and the row's, measured one right after the other, once the
    row is prepared and what its preparation wrote is on disk (an upload reaches the
    indexer seconds after it was written: its write-back is not the pass's cost)."""
    row.prepare()
    os.sync()
    baseline = raw_hashlib(data)
    started = time.perf_counter()
    row.run()
    return baseline, time.perf_counter() - started


def measure(size_mib: int, rounds: int) -> list[dict[str, Any]] | None:
    data = os.urandom(size_mib * 1024 * 1024)
    digest = hashlib.sha512(data).hexdigest()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = start_seaweedfs(root / "seaweedfs")
        if started is None:
            return None
        process, output, endpoint = started
        try:
            measured = rows(root, SeaweedFS(endpoint), data, digest)
            pairs: dict[str, list[tuple[float, float]]] = {row.name: [] for row in measured}
            for number in range(rounds):
                turn = number % len(measured)  # each row goes first in turn
                for row in measured[turn:] + measured[:turn]:
                    pairs[row.name].append(timed(row, data))
        finally:
            stop_seaweedfs(process, output)
    return [
        {
            "row": row.name,
            # Each measurement against the hashlib run just before it: a machine whose
            # load changes between rounds changes both.
            "ratio": round(statistics.median(base / took for base, took in pairs[row.name]), 3),
            "seconds": round(statistics.median(took for _, took in pairs[row.name]), 4),
            "hashlib_seconds": round(statistics.median(base for base, _ in pairs[row.name]), 4),
            "mib": size_mib,
            "rounds": rounds,
            "copies": row.copies,
        }
        for row in measured
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    args = parser.parse_args()
    results = measure(args.size_mib, args.rounds)
    if results is None:
        print("SeaweedFS did not start", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    hashlib_seconds = statistics.median(result["hashlib_seconds"] for result in results)
    mib = args.size_mib
    print(f"{mib} MiB, median of {args.rounds} alternating rounds")
    print(f"  {'hashlib.sha512 in memory':<40} {mib / hashlib_seconds:6.0f} MiB/s  (1.00)")
    for result in results:
        copies = {None: "", 1: "  1 copy"}.get(result["copies"], f"  {result['copies']} copies")
        rate = mib / result["seconds"]
        ratio = result["ratio"]
        print(f"  {result['row']:<40} {rate:6.0f} MiB/s  ({ratio:.2f} of hashlib){copies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
