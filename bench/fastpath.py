"""The gateway's fast paths against baselines, side by side in one run: one table.

    make bench        # .venv/bin/python bench/fastpath.py [--rounds 3] [--duration 3]
                      #   [--memory-sizes 1000,10000,100000] [--upload-rounds 3]

Starts everything it needs on loopback (a SeaweedFS as the tests start it, gateway
processes through ``tooltool-gateway``'s own ``main``), needs wrk (``apt-get install
wrk``) and two cores, and takes about eight minutes. This process and what it starts
run on core 1 (wrk, the clients, SeaweedFS) unless a row says otherwise; the servers
measured run on core 0 (``taskset -c 0``). The rows:

- Downloads against a bare Starlette app answering a constant 302 under the same
  server (bench/bare_app.py), on the local store and on SeaweedFS (one region), with
  the gateway's defaults but for the embedded indexer, off: a cached public download
  (anonymous), a cached internal download (``Authorization: Bearer`` with a JWT from
  ``POST /token``), and a cache miss: ``TOOLTOOL_INDEX_CACHE_SECONDS=0`` and 64
  digests asked in turn, so every request reads its index object from the store and
  no two of the 32 in flight share a read. wrk -t1 -c32; the base gets the same
  requests (header and paths).
- Two worker processes (``--workers 2``) against one, cached public downloads on the
  local store: both pinned to core 0 with wrk on core 1 (what a second worker costs
  on one core), and both unpinned with wrk unpinned (what it gains on two cores,
  sharing them with the load).
- Signed CloudFront redirects against the bare app, when the gateway's settings take
  CLOUDFRONT_URL, CLOUDFRONT_KEY_ID and CLOUDFRONT_PRIVATE_KEY (else "not available").
- Upload -> downloadable on the embedded default, 10 MB and 100 MB, against
  hashlib.sha512 over the same bytes (bench/upload_rows.py).
- A whole indexer pass against hashlib on both stores: bench/bench_verify.py's rows
  (bench/pass_rows.py).
- Memory (RSS) of one gateway worker at 1k, 10k and 100k files (bench/memory_rows.py;
  100k is about two and a half minutes of the run: ``--memory-sizes 1000,10000`` leaves
  it out).

Each request-rate row is measured in ``--rounds`` rounds, every one with fresh server
processes, ours and the base in turn (the order alternating); the ratio is the median
of the per-round ratios, the latencies are medians. A row whose wrk runs saw an answer
other than 2xx/3xx or a socket error reports the errors, not a rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudfront
import http_rows
import memory_rows
import pass_rows
import upload_rows
from harness import (
    BOTH_CORES,
    LOAD_CORE,
    SERVER_CORE,
    bare_command,
    failed,
    gateway_command,
    machine,
    seaweedfs,
)
from http_rows import Comparison, Load, Seeded, Side

from tests.gateway.auth_helpers import basic, clients_file_entries

ROTATION = 64  # digests asked in turn by the miss rows: more than wrk's connections
JWT_SECRET = "fastpath-bench-jwt-secret-0123456789"  # noqa: S105 - the bench's own gateways
COLUMNS = ("row", "ours", "base", "ratio", "p50", "p99", "note")
HEADINGS = ("row", "ours", "base", "ratio", "p50 ours/base", "p99 ours/base", "note")
LEGEND = (
    "ours and base: req/s in the request-rate rows (base: the bare Starlette 302 app unless"
    " the row names another), seconds in the upload and pass rows, RSS MiB in the memory rows;"
    " ratio: ours/base"
)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if shutil.which("wrk") is None or (os.cpu_count() or 1) < 2:
        print("needs wrk (apt-get install wrk) and two cores", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the load side; servers are put on core 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastpath-") as tmp:
        scratch = Path(tmp)
        (scratch / "logs").mkdir()
        clients = scratch / "clients.json"
        clients.write_text(json.dumps(clients_file_entries()))
        credentials = {"TOOLTOOL_CLIENTS_FILE": str(clients), "TOOLTOOL_JWT_SECRET": JWT_SECRET}
        _section("downloads (wrk)")
        rows, token = _download_rows(args, credentials, scratch)
        _section("upload -> downloadable")
        for uploads in upload_rows.measure(
            [10 * 10**6, 100 * 10**6], rounds=args.upload_rounds, scratch=scratch
        ):
            rows.append({"row": uploads.row, **uploads.columns()})
        _section("indexer pass (bench/bench_verify.py)")
        passes = pass_rows.measure(args.verify_size_mib, args.verify_rounds)
        rows += [
            {"row": f"indexer pass: {row['row']}", **pass_rows.columns(row)} for row in passes.rows
        ]
        if passes.failure is not None:
            rows.append({"row": "indexer pass vs hashlib", **failed(passes.failure)})
        _section("memory")
        for memory in memory_rows.measure(
            args.memory_sizes, settings=credentials, token=token, scratch=scratch
        ):
            rows.append({"row": memory.row, **memory.columns()})
    print(f"\n{machine()}")
    print(_command_line(argv))
    _print_table(rows)
    if passes.plain_output:
        print("\nbench/bench_verify.py (no --json yet), as it printed:\n" + passes.plain_output)
    print(f"\nwall time {time.monotonic() - started:.0f} s")
    return 0


def _download_rows(
    args: argparse.Namespace, credentials: Mapping[str, str], scratch: Path
) -> tuple[list[dict[str, str]], str]:
    """The request-rate rows, on the local store and a SeaweedFS; and the token they used."""
    local = {
        **credentials,
        "TOOLTOOL_DATA_DIR": str(scratch / "local-data"),
        "TOOLTOOL_EMBEDDED_INDEXER": "false",
    }
    with seaweedfs(scratch) as weed:
        s3 = {**credentials, **weed.environ(("us-east-1", weed.new_bucket()))}
        stores = {"local store": local, "SeaweedFS": s3}
        seeded = {
            name: http_rows.seed(settings, scratch / f"files-{index}", public=ROTATION)
            for index, (name, settings) in enumerate(stores.items())
        }
        token = http_rows.issue_token(local, basic("reader"), scratch / "logs")
        comparisons, unavailable = _comparisons(stores, seeded, token, scratch)
        measured = http_rows.measure(
            comparisons,
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            logs=scratch / "logs",
        )
    return [{"row": row.load.row, **row.columns()} for row in measured] + unavailable, token


def _comparisons(
    stores: Mapping[str, Mapping[str, str]],
    seeded: Mapping[str, Seeded],
    token: str,
    scratch: Path,
) -> tuple[list[Comparison], list[dict[str, str]]]:
    """The request-rate comparisons, and the rows of those that cannot run (CloudFront,
    when the gateway has no CloudFront settings)."""
    bare = Side(bare_command, {})
    bearer = f"Authorization: Bearer {token}"
    comparisons: list[Comparison] = []
    unavailable: list[dict[str, str]] = []
    for name, settings in stores.items():
        files = seeded[name]
        gateway = Side(gateway_command, settings)
        rotation = tuple(f"/sha512/{digest}" for digest in files.public)
        comparisons += [
            Comparison(
                gateway,
                bare,
                (
                    Load(f"cached public download, {name}", rotation[:1]),
                    Load(
                        f"cached internal download, Bearer JWT, {name}",
                        (f"/sha512/{files.internal}",),
                        header=bearer,
                    ),
                ),
            ),
            Comparison(
                Side(gateway_command, {**settings, "TOOLTOOL_INDEX_CACHE_SECONDS": "0"}),
                bare,
                (
                    Load(
                        f"cache miss (cache off, {ROTATION} digests in turn), {name}",
                        rotation,
                    ),
                ),
            ),
        ]
    local, local_files = stores["local store"], seeded["local store"]
    path = (f"/sha512/{local_files.public[0]}",)

    def workers(count: int, cores: str) -> Side:
        return Side(
            lambda port: gateway_command(port, "--workers", str(count)), local, cores, count
        )

    comparisons += [
        Comparison(
            workers(2, SERVER_CORE),
            workers(1, SERVER_CORE),
            (
                Load(
                    "2 workers vs 1 (base): server on core 0, wrk on core 1; cached public, local",
                    path,
                ),
            ),
        ),
        Comparison(
            workers(2, BOTH_CORES),
            workers(1, BOTH_CORES),
            (
                Load(
                    "2 workers vs 1 (base): server and wrk unpinned; cached public, local",
                    path,
                ),
            ),
            load_cores=BOTH_CORES,
        ),
    ]
    s3_files = seeded["SeaweedFS"]
    row = "CloudFront redirect, cached public download, SeaweedFS"
    found = cloudfront.settings(stores["SeaweedFS"], scratch)
    if isinstance(found, str):
        unavailable.append({"row": row, "ratio": "n/a", "note": found})
    else:
        load = Load(row, (f"/sha512/{s3_files.public[0]}",), location=cloudfront.URL)
        comparisons.append(Comparison(Side(gateway_command, found), bare, (load,)))
    return comparisons, unavailable


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each request-rate row")
    parser.add_argument("--duration", type=int, default=3, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--upload-rounds", type=int, default=3)
    parser.add_argument(
        "--memory-sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[1000, 10000, 100000],
        help="files in the stores of the memory rows (default 1000,10000,100000)",
    )
    parser.add_argument("--verify-size-mib", type=int, default=128)
    parser.add_argument("--verify-rounds", type=int, default=3)
    return parser.parse_args(argv)


def _section(name: str) -> None:
    print(f"\n== {name}", file=sys.stderr, flush=True)


def _command_line(argv: list[str] | None) -> str:
    arguments = sys.argv[1:] if argv is None else argv
    return "command: .venv/bin/python bench/fastpath.py " + " ".join(arguments)


def _print_table(rows: list[dict[str, str]]) -> None:
    cells = [list(HEADINGS)] + [[row.get(column, "") for column in COLUMNS] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(COLUMNS) - 1)]
    print(f"\n{LEGEND}\n")
    for number, line in enumerate(cells):
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("| " + " | ".join([*padded, line[-1]]) + " |")
        if number == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|---|")


if __name__ == "__main__":
    sys.exit(main())
