"""Upload verification throughput against hashlib's own sha512, side by side in one run.

The indexer verifies a staged upload by copying it to a private key, streaming
that through sha512 and copying it into place. This prints, for the local
store and for S3 (a SeaweedFS started here on loopback), both the streaming
hash alone and a whole indexer pass over one pending upload, as ratios of
plain hashlib.sha512 over the same bytes in memory, measured in alternating
rounds so all see the same machine load.

    .venv/bin/python bench/bench_verify.py [--size-mib 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.digests import CHUNK_SIZE, hash_stream_read_ahead
from indexer.intake import Pending, new_staging_key
from indexer.job import Indexer
from indexer.s3_store import S3Store
from indexer.schema import blob_key, index_key
from indexer.stores import Regions, Store
from tests.conftest import SeaweedFS, _start_seaweedfs, make_local_store


def raw_hashlib(data: bytes) -> float:
    started = time.perf_counter()
    hasher = hashlib.sha512()
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK_SIZE):
        hasher.update(view[offset : offset + CHUNK_SIZE])
    hasher.hexdigest()
    return time.perf_counter() - started


def verify(store: Store, key: str, digest: str) -> float:
    started = time.perf_counter()
    with store.open(key) as stream:
        assert hash_stream_read_ahead(stream).digest == digest
    return time.perf_counter() - started


def indexer_pass(store: Store, data: bytes, digest: str) -> float:
    """A whole pass over one pending upload: private copy, verification, copy into place,
    index object, catalog, clean-up."""
    store.delete(blob_key(digest))
    store.delete(index_key(digest))
    staging = new_staging_key(digest)
    store.put(staging, data)
    pending = Pending(
        digest=digest,
        size=len(data),
        visibility="public",
        batch_id=1,
        filenames=("bench.bin",),
        author="bench",
        region=store.region,
        staging_key=staging,
        created=time.time(),
    )
    store.put(pending.key, pending.to_json())
    started = time.perf_counter()
    report = Indexer(Regions([store])).run_once(check=False)
    elapsed = time.perf_counter() - started
    assert report.indexed == [digest], report.summary()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = os.urandom(args.size_mib * 1024 * 1024)
    digest = hashlib.sha512(data).hexdigest()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = _start_seaweedfs(root / "seaweedfs")
        if started is None:
            print("SeaweedFS did not start", file=sys.stderr)
            return 1
        process, output, endpoint = started
        try:
            weed = SeaweedFS(endpoint)
            bucket = weed.new_bucket()
            stores: dict[str, Store] = {
                "local": make_local_store(root / "local"),
                "s3": S3Store(weed.client(), bucket, region="us-east-1"),
            }
            for store in stores.values():
                store.put("staging/bench", data)
            times: dict[str, list[float]] = {"hashlib": []}
            for _ in range(args.rounds):
                times["hashlib"].append(raw_hashlib(data))
                for name, store in stores.items():
                    times.setdefault(f"hash {name}", []).append(
                        verify(store, "staging/bench", digest)
                    )
                    times.setdefault(f"pass {name}", []).append(indexer_pass(store, data, digest))
        finally:
            process.terminate()
            process.wait(timeout=10)
            output.close()
    base = statistics.median(times["hashlib"])
    mib = args.size_mib
    print(f"{mib} MiB, median of {args.rounds} alternating rounds")
    labels = {"hash": "streaming hash from", "pass": "whole indexer pass on"}
    print(f"  {'hashlib.sha512 in memory':<30}: {mib / base:6.0f} MiB/s  (1.00)")
    for name, measured in times.items():
        if name == "hashlib":
            continue
        kind, store_name = name.split()
        median = statistics.median(measured)
        label = f"{labels[kind]} {store_name}"
        print(f"  {label:<30}: {mib / median:6.0f} MiB/s  ({base / median:.2f} of hashlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
