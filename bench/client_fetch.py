"""The ``tooltool`` client's fetch against the legacy client's, side by side in one run.

    .venv/bin/python bench/client_fetch.py [--rounds 3] [--files 50] [--total-mb 520]

A local gateway on the embedded default (``tooltool-gateway``, the local store, one
worker) serves a manifest of `--files` files of mixed sizes (about 0.2 to 56 MB,
`--total-mb` in all), imported with ``tooltool-indexer import``. Each round, in turn
(the order alternating), with fresh folders:

- cold: ``tooltool fetch -c CACHE`` (the defaults: 8 at once, batch resolve) against
  the legacy client's fetch done the legacy way (bench/legacy_fetch.py: one file
  after another, 4 KiB reads, the file read again to hash it, copied into the cache);
- cold, ``--jobs 1``: what streaming and hashing in one pass gain without parallelism;
- warm: ``tooltool fetch -c CACHE`` into an empty folder with every file cached,
  against hashing the files (sha512 over each, one after another, 1 MiB reads, in a
  fresh Python process) — and the legacy client's warm fetch.

Times are wall-clock times of whole commands (Python's start-up included on both
sides); the ratio is the median of the per-round ratios. Nothing is pinned: client
and gateway share the two cores, as on a CI machine running its own gateway.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# tests/: SeaweedFS started as the tests start it.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from harness import REPO, free_port, gateway_command, machine, seaweedfs, serve

BIN = Path(sys.executable).parent
_HASH = (
    "import hashlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    h = hashlib.sha512()\n"
    "    with open(name, 'rb', buffering=0) as f:\n"
    "        while chunk := f.read(1 << 20):\n"
    "            h.update(chunk)\n"
)


def sizes(files: int, total: int) -> list[int]:
    """`files` sizes growing by 12 % each, `total` bytes in all."""
    weights = [1.12**index for index in range(files)]
    scale = total / sum(weights)
    return [max(1, int(weight * scale)) for weight in weights]


def make_files(folder: Path, files: int, total: int) -> list[dict[str, object]]:
    records = []
    for index, size in enumerate(sizes(files, total)):
        path = folder / f"file-{index:02d}.bin"
        data = os.urandom(size)
        path.write_bytes(data)
        records.append(
            {
                "filename": path.name,
                "size": size,
                "algorithm": "sha512",
                "digest": hashlib.sha512(data).hexdigest(),
                "visibility": "public",
            }
        )
    return records


def timed(command: Sequence[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[:3]} failed: {result.stderr.decode()[-500:]}")
    return elapsed


class Rounds:
    """Fresh folders per run under `scratch`, the manifest copied into each."""

    def __init__(self, scratch: Path, manifest: Path, url: str) -> None:
        scratch.mkdir()
        self.scratch = scratch
        self.manifest = manifest
        self.url = url
        self._count = 0

    def folder(self) -> Path:
        self._count += 1
        folder = self.scratch / f"run-{self._count}"
        folder.mkdir()
        shutil.copy(self.manifest, folder / "manifest.tt")
        return folder

    def ours(self, cache: Path, *options: str) -> float:
        folder = self.folder()
        command = [str(BIN / "tooltool"), "-q", "--url", self.url, "-c", str(cache), *options]
        try:
            return timed([*command, "fetch"], folder)
        finally:
            shutil.rmtree(folder)

    def legacy(self, cache: Path) -> float:
        folder = self.folder()
        script = REPO / "bench" / "legacy_fetch.py"
        try:
            return timed([sys.executable, str(script), "--url", self.url, "-c", str(cache)], folder)
        finally:
            shutil.rmtree(folder)

    def cold(self, run: Callable[[Path], float]) -> float:
        cache = self.scratch / "cold-cache"
        shutil.rmtree(cache, ignore_errors=True)
        try:
            return run(cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--total-mb", type=int, default=520)
    parser.add_argument(
        "--stores", default="local", help="local, s3 or local,s3: the gateway's store"
    )
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tooltool-bench-fetch-") as scratch_name:
        scratch = Path(scratch_name)
        source = scratch / "source"
        source.mkdir()
        records = make_files(source, options.files, options.total_mb * 1_000_000)
        total = sum(int(r["size"]) for r in records)  # type: ignore[call-overload]
        manifest = scratch / "manifest.tt"
        manifest.write_text(json.dumps(records, indent=2))
        for store in options.stores.split(","):
            with contextlib.ExitStack() as stack:
                settings = _store(store, scratch, stack)
                _import(settings, source)
                port = free_port()
                stack.enter_context(
                    serve(
                        gateway_command(port),
                        port=port,
                        settings=settings,
                        log=scratch / f"gateway-{store}.log",
                        cores=None,
                    )
                )
                rounds = Rounds(scratch / store, manifest, f"http://127.0.0.1:{port}/")
                table = measure(rounds, options.rounds, source, records)
            report(table, options, total, store)
    return 0


def _store(store: str, scratch: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """The gateway's settings for `store`: the embedded local store, or a SeaweedFS bucket
    (started here) with the indexer in process."""
    if store == "local":
        return {"TOOLTOOL_DATA_DIR": str(scratch / "data")}
    if store == "s3":
        weed = stack.enter_context(seaweedfs(scratch))
        clients = scratch / "clients.json"
        clients.write_text("[]")  # anonymous downloads only
        return {
            **weed.environ(("us-east-1", weed.new_bucket())),
            "TOOLTOOL_EMBEDDED_INDEXER": "true",
            "TOOLTOOL_CLIENTS_FILE": str(clients),
            "TOOLTOOL_JWT_SECRET": "b" * 32,
        }
    raise SystemExit(f"--stores: {store!r} is neither local nor s3")


def _import(settings: dict[str, str], source: Path) -> None:
    subprocess.run(
        [
            str(BIN / "tooltool-indexer"),
            "import",
            "--visibility",
            "public",
            *sorted(str(p) for p in source.iterdir()),
        ],
        env={**os.environ, **settings},
        stdout=subprocess.DEVNULL,
        check=True,
    )


def measure(
    rounds: Rounds, count: int, source: Path, records: list[dict[str, object]]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {
        name: [] for name in ("legacy", "ours", "ours-j1", "hash", "warm", "legacy-warm")
    }
    warm_cache = rounds.scratch / "warm-cache"
    rounds.ours(warm_cache)  # fills it
    files = [str(source / str(r["filename"])) for r in records]
    for index in range(count):
        cold = [
            ("legacy", lambda: rounds.cold(rounds.legacy)),
            ("ours", lambda: rounds.cold(rounds.ours)),
            ("ours-j1", lambda: rounds.cold(lambda cache: rounds.ours(cache, "--jobs", "1"))),
        ]
        warm = [
            ("hash", lambda: timed([sys.executable, "-c", _HASH, *files], rounds.scratch)),
            ("warm", lambda: rounds.ours(warm_cache)),
            ("legacy-warm", lambda: rounds.legacy(warm_cache)),
        ]
        for group in (cold, warm):
            for name, run in group if index % 2 == 0 else reversed(group):
                times[name].append(run())
    return times


def report(
    times: dict[str, list[float]], options: argparse.Namespace, total: int, store: str
) -> None:
    def med(name: str) -> float:
        return statistics.median(times[name])

    def ratio(slow: str, fast: str) -> float:
        return statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))

    print(
        f"# tooltool fetch from a gateway on the {store} store: {options.files} files, "
        f"{total / 1e6:.0f} MB, {options.rounds} rounds — {machine()}"
    )
    print(f"| {'row':<52} | {'median s':>8} | {'ratio':>14} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 16}|")
    rows = [
        ("cold: legacy client's way (one at a time, 4 KiB)", "legacy", ""),
        ("cold: tooltool fetch (8 at once)", "ours", f"{ratio('legacy', 'ours'):.1f}x faster"),
        ("cold: tooltool fetch --jobs 1", "ours-j1", f"{ratio('legacy', 'ours-j1'):.1f}x faster"),
        ("warm: sha512 of the files (one process)", "hash", ""),
        ("warm: tooltool fetch, cache full", "warm", f"{ratio('warm', 'hash'):.2f}x hashing"),
        (
            "warm: legacy client's way",
            "legacy-warm",
            f"{ratio('legacy-warm', 'hash'):.2f}x hashing",
        ),
    ]
    for label, name, note in rows:
        print(f"| {label:<52} | {med(name):>8.2f} | {note:>14} |")
    print(
        f"\n{options.total_mb} MB at {total / med('ours') / 1e6:.0f} MB/s cold (ours), "
        f"{total / med('legacy') / 1e6:.0f} MB/s (legacy's way)"
    )


if __name__ == "__main__":
    sys.exit(main())
