"""Upload verification throughput against hashlib's own sha512, side by side in one run.

The indexer verifies staged uploads by streaming them through sha512
(indexer.digests.hash_stream over Store.open). This prints, for the local
store and for S3 (a SeaweedFS started here on loopback), the verification
rate as a ratio of plain hashlib.sha512 over the same bytes in memory,
measured in alternating rounds so both see the same machine load.

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
from indexer.s3_store import S3Store
from indexer.stores import Store
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
            times: dict[str, list[float]] = {"hashlib": [], **{name: [] for name in stores}}
            for _ in range(args.rounds):
                times["hashlib"].append(raw_hashlib(data))
                for name, store in stores.items():
                    times[name].append(verify(store, "staging/bench", digest))
        finally:
            process.terminate()
            process.wait(timeout=10)
            output.close()
    base = statistics.median(times["hashlib"])
    mib = args.size_mib
    print(f"{mib} MiB, median of {args.rounds} alternating rounds")
    print(f"  hashlib.sha512 in memory : {mib / base:8.0f} MiB/s  (1.00)")
    for name in stores:
        median = statistics.median(times[name])
        print(
            f"  verify from {name:<13}: {mib / median:8.0f} MiB/s  ({base / median:.2f} of hashlib)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
