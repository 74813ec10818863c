"""One ``POST /resolve`` against the GETs it replaces, for manifests of N files, side by side.

    .venv/bin/python bench/bench_resolve.py [--files 100,1000] [--rounds 3] [--no-s3]

On the local store and on a SeaweedFS, N public files are put in place by the
operator import; a gateway process pinned to one core (``harness.serve``) then
answers a client on the other core, for each N:

- ``GET /sha512/<digest>`` for each of the N digests, over 16 kept-alive
  connections at once (a client fetching a manifest in parallel, redirects not
  followed);
- one ``POST /resolve`` naming the N digests, on one connection.

Both over two gateways: one with the index cache off (every lookup reads the
store: a gateway's first sight of a manifest) and one with the default cache,
primed. Each figure is the median of ``--rounds`` rounds, the two sides measured
in turn within a round; the ratio is the GETs' time over the resolve's. Ratios,
never timed assertions: the figures are this machine's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchError, fetch_each, free_port, gateway_command, request, seaweedfs, serve
from http_rows import seed

from tests.gateway.auth_helpers import clients_file_entries

CONNECTIONS = 16
JWT_SECRET = "resolve-bench-jwt-secret-0123456789"  # noqa: S105 - the bench's own gateways


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="100,1000", help="manifest sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-s3", action="store_true", help="the local store only")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.files.split(",")]
    print(f"{'store':10} {'files':>5} {'index cache':11} {'GETs ms':>9} {'resolve ms':>10} ratio")
    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        (scratch / "logs").mkdir()
        clients = scratch / "clients.json"
        clients.write_text(json.dumps(clients_file_entries()))
        base = {
            "TOOLTOOL_CLIENTS_FILE": str(clients),
            "TOOLTOOL_JWT_SECRET": JWT_SECRET,
            "TOOLTOOL_EMBEDDED_INDEXER": "false",
        }
        stores = {"local": {**base, "TOOLTOOL_DATA_DIR": str(scratch / "local-data")}}
        if not args.no_s3:
            weed = stack.enter_context(seaweedfs(scratch))
            stores["SeaweedFS"] = {**base, **weed.environ(("us-east-1", weed.new_bucket()))}
        for name, settings in stores.items():
            digests = seed(settings, scratch / f"files-{name}", public=max(sizes)).public
            for cache, seconds in (("off", "0"), ("on", "5")):
                cached = {
                    **settings,
                    "TOOLTOOL_INDEX_CACHE_SECONDS": seconds,
                    "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS": seconds,
                }
                with _gateway(cached, scratch / "logs" / f"{name}-{cache}.log") as url:
                    for size in sizes:
                        gets, resolve = _measure(url, digests[:size], args.rounds)
                        print(
                            f"{name:10} {size:5} {cache:11} {gets * 1e3:9.1f}"
                            f" {resolve * 1e3:10.1f} {gets / resolve:5.1f}",
                            flush=True,
                        )
    return 0


@contextmanager
def _gateway(settings: Mapping[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with serve(gateway_command(port), port=port, settings=settings, log=log) as server:
        yield server.url


def _measure(url: str, digests: Sequence[str], rounds: int) -> tuple[float, float]:
    """Median seconds of the N GETs and of the one resolve (after a round to prime)."""
    paths = [f"/sha512/{digest}" for digest in digests]
    body = json.dumps([{"digest": digest, "algorithm": "sha512"} for digest in digests]).encode()
    gets: list[float] = []
    resolves: list[float] = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        statuses = fetch_each(url, paths, {}, connections=CONNECTIONS)
        gets.append(time.perf_counter() - started)
        if statuses != {302: len(paths)}:
            raise BenchError(f"the GETs answered {dict(statuses)}")
        started = time.perf_counter()
        status, _, answer = request("POST", f"{url}/resolve", body=body)
        resolves.append(time.perf_counter() - started)
        files = json.loads(answer)["files"] if status == 200 else []
        if len(files) != len(digests) or not all("url" in entry for entry in files):
            raise BenchError(f"POST /resolve answered {status}: {answer[:200]!r}")
    # The first round primes the cache (when on) and the signed URLs: left out.
    return statistics.median(gets[1:]), statistics.median(resolves[1:])


if __name__ == "__main__":
    sys.exit(main())
