"""bench/fastpath.py's memory rows: one gateway worker's RSS at 1k, 10k and 100k files.

For each size, a new local store gets what ``bench_catalog.py`` writes (one index
object a file, four in five public, one batch per ten files, the catalog shards;
no blob bytes), and a gateway (``tooltool-gateway``, one worker, the embedded
indexer off so that only the serving process is measured; core 0) serves it. Its
RSS (``VmRSS`` of /proc) is read once it answers, again after every digest has
been asked for once (``GET /sha512/<d>`` with a token allowed every file, from 16
connections: the index cache holds every file, up to its 100,000 entries), and
again after one search (``GET /file?q=``) that loads the catalog. The peak
(``VmHWM``) is in the note.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BenchError,
    failed,
    fetch_each,
    free_port,
    gateway_command,
    get,
    serve,
)

SEARCH = "sccache"  # in three filenames of each store (bench_catalog.RARE)


@dataclass
class Memory:
    """One size's figures, MiB."""

    files: int
    mib: dict[str, float] = field(default_factory=dict)
    failure: str | None = None

    @property
    def row(self) -> str:
        return f"memory of one worker, {self.files:,} files (RSS MiB; base: just started)"

    def columns(self) -> dict[str, str]:
        if self.failure is not None:
            return failed(self.failure)
        return {
            "ours": f"{self.mib['searched']:.1f}",
            "base": f"{self.mib['started']:.1f}",
            "ratio": f"{self.mib['searched'] / self.mib['started']:.2f}",
            "note": (
                f"every digest asked: {self.mib['warmed']:.1f} MiB;"
                f" then one search (catalog loaded): {self.mib['searched']:.1f} MiB;"
                f" peak {self.mib['peak']:.1f} MiB"
            ),
        }


def measure(
    sizes: Sequence[int], *, settings: Mapping[str, str], token: str, scratch: Path
) -> list[Memory]:
    """Each size in a store of its own; `settings` hold the gateway's credentials."""
    from bench_catalog import set_up

    results = []
    for files in sizes:
        result = Memory(files)
        results.append(result)
        data_dir = scratch / f"memory-{files}"
        with contextlib.redirect_stdout(sys.stderr):  # set_up says how long it took
            _, contents = set_up(data_dir, files, random.Random(files))  # noqa: S311
        paths = [f"/sha512/{obj.digest}" for obj in contents.objects]
        del contents
        try:
            result.mib = _measure_one(
                data_dir, paths, {**settings, "TOOLTOOL_DATA_DIR": str(data_dir)}, token, scratch
            )
        except BenchError as exc:
            result.failure = str(exc)
        print(f"  memory, {files:,} files: {result.columns()['note']}", file=sys.stderr)
    return results


def _measure_one(
    data_dir: Path, paths: list[str], settings: Mapping[str, str], token: str, scratch: Path
) -> dict[str, float]:
    port = free_port()
    auth = {"Authorization": f"Bearer {token}"}
    settings = {**settings, "TOOLTOOL_EMBEDDED_INDEXER": "false"}
    log = scratch / f"{data_dir.name}.log"
    with serve(gateway_command(port), port=port, settings=settings, log=log) as server:
        figures = {"started": server.memory_kib()["VmRSS"]}
        statuses = fetch_each(server.url, paths, auth)
        if set(statuses) != {302}:
            raise BenchError(f"asking every digest once answered {dict(statuses)}")
        figures["warmed"] = server.memory_kib()["VmRSS"]
        status, _, body = get(server.url, f"/file?q={SEARCH}", auth)
        if status != 200 or not json.loads(body)["result"]:
            raise BenchError(f"GET /file?q={SEARCH} answered {status}: {body[:200]!r}")
        memory = server.memory_kib()
        figures["searched"], figures["peak"] = memory["VmRSS"], memory["VmHWM"]
    return {name: kib / 1024 for name, kib in figures.items()}
