"""What a cached download costs in the fast path's ASGI call, in two checkouts side by side.

    .venv/bin/python bench/bench_fast_metrics.py --base /path/to/other/checkout [--rounds 7]

Builds the gateway of each checkout (its ``create_app`` on a local store, the
embedded indexer off, mozlog lines written as production writes them, to
/dev/null), asks one public file once so that it is cached, then times
``await app(scope, receive, send)`` of a ``GET /sha512/<digest>`` answered by
the fast path, anonymous and with a Bearer token: CPU µs per call, the median
of rounds run in turn, one process per round and checkout. With ``--base`` a checkout without this
one's metrics, the difference is what counting them costs a cached download.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(calls: int, caller: str) -> float:
    """CPU µs per fast-path call of `caller` (anonymous, or bearer: a token from POST
    /token), in this process (the checkout first on sys.path)."""
    from gateway.app import create_app
    from gateway.settings import Settings
    from indexer.config import open_regions
    from indexer.importer import import_file
    from indexer.logs import configure_logging

    configure_logging(log_format="mozlog", stream=open(os.devnull, "w"))  # noqa: SIM115
    data = Path(tempfile.mkdtemp())
    settings = Settings.from_environ(
        {"TOOLTOOL_DATA_DIR": str(data / "store"), "TOOLTOOL_EMBEDDED_INDEXER": "false"}
    )
    regions = open_regions(settings.stores)
    blob = data / "blob"
    blob.write_bytes(os.urandom(1000))
    digest = import_file(regions, blob, visibility="public", message="bench", author="bench").digest
    app = create_app(settings, regions)
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
    if caller == "bearer":
        from starlette.testclient import TestClient

        [client] = json.loads((data / "store" / ".clients.json").read_text())
        answer = TestClient(app).post("/token", auth=(client["clientId"], client["accessToken"]))
        headers.append((b"authorization", f"Bearer {answer.json()['token']}".encode()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/sha512/{digest}",
        "raw_path": f"/sha512/{digest}".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])  # type: ignore[arg-type]

    async def run() -> float:
        await app(dict(scope), receive, send)  # a miss: the app answers, caches, verifies
        # CPU time: the machines are shared, and waiting for a core is not the call's cost.
        started = time.process_time()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / calls * 1e6

    per_call = asyncio.run(run())
    assert set(statuses) == {302}, statuses
    return per_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--caller", default="anonymous", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:  # one round, in a process of its own
        sys.path.insert(0, str(args.measure))
        print(json.dumps(measure(args.calls, args.caller)))
        return 0
    checkouts = {"ours": HERE, "base": args.base.resolve()}
    print(f"ours: {HERE}, base: {checkouts['base']}")
    print("| cached download | CPU µs per call, ours | base | difference |")
    print("| --- | ---: | ---: | ---: |")
    for caller in ("anonymous", "bearer"):
        results: dict[str, list[float]] = {name: [] for name in checkouts}
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
            for name in order:
                command = [sys.executable, __file__, "--base", str(args.base)]
                command += ["--calls", str(args.calls), "--measure", str(checkouts[name])]
                command += ["--caller", caller]
                run = subprocess.run(command, check=True, capture_output=True, text=True)
                results[name].append(json.loads(run.stdout))
        ours, base = (statistics.median(results[name]) for name in ("ours", "base"))
        print(f"| {caller} | {ours:.2f} | {base:.2f} | {ours - base:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
