"""What rendering the browsable site costs at 1k, 10k and 100k files, side by side.

    .venv/bin/python bench/bench_site.py [--sizes 1000,10000,100000]

For each size, a fresh LocalStore in a temporary directory gets the contents
``bench_catalog.py`` makes (one index object a file, four in five public, one
batch record per ten files, the catalog shards), written directly. Then, with
the store wrapped to count the requests made of it:

- a full render (``SiteJob.rebuild``, what ``tooltool-indexer rebuild`` and a
  first pass do): time, pages rendered, objects read and written, bytes;
- incremental passes after a new batch of ten files (index objects, batch
  record and catalog update written as the indexer would, then
  ``SiteJob.refresh`` in the process that rendered before): time, pages
  rendered (search bundle files included), objects read and written. The
  contents hold round numbers of files and batches, so the first new batch
  carries the internal view's search records past a multiple of 10,000 (its
  search archive is built again, as it is once every 10,000 records); the
  second is the usual pass;
- a pass after an old public file is made internal: the public search archive
  holding it is built again;
- a pass with nothing new, in that process and in a new one (which loads the
  site's sources from their shards, and renders nothing);
- the memory the renderer's copy of the sources holds (tracemalloc).

The last column is the ratio of the largest size to the smallest.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_catalog import (
    FILES_PER_BATCH,
    CountingStore,
    make_contents,
    set_up,
    write_contents,
)

from indexer.catalog import Catalog
from indexer.schema import index_key, utc_timestamp
from indexer.site import job as site_job
from indexer.site.job import SiteJob
from indexer.site.sources import SiteSources

Results = dict[str, float]


class RenderCount:
    """Counts the pages rendered, by patching the job's render function."""

    def __init__(self) -> None:
        self.pages = 0
        self._real = site_job.render

    def __enter__(self) -> RenderCount:
        def counted(env: Any, spec: Any) -> bytes:
            self.pages += 1
            return self._real(env, spec)

        site_job.render = counted  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        site_job.render = self._real  # type: ignore[assignment]


def _timed(
    name: str, results: Results, counting: CountingStore, action: Callable[[], object]
) -> None:
    counting.take()
    with RenderCount() as rendered:
        started = time.perf_counter()
        action()
        results[f"{name} seconds"] = time.perf_counter() - started
    counts: Counter[str] = counting.take()
    results[f"{name} pages rendered"] = rendered.pages
    results[f"{name} get"] = counts["get"]
    results[f"{name} list pages"] = counts["list_pages"]
    results[f"{name} put"] = counts["put"]
    results[f"{name} delete"] = counts["delete"]
    results[f"{name} written MiB"] = counts["written"] / 2**20
    print(f"  {name}: {results[f'{name} seconds']:.2f} s", flush=True)


def measure(files: int) -> Results:
    rng = random.Random(files)  # noqa: S311 - the same contents every run, not secrets
    results: Results = {}
    with tempfile.TemporaryDirectory() as scratch:
        store, contents = set_up(Path(scratch), files, rng)
        counting = CountingStore(store)
        job = SiteJob(counting)  # type: ignore[arg-type]
        _timed("full", results, counting, job.rebuild)
        # New batches, as the gateway and the indexer write them: the first may carry a
        # view's search records past a multiple of STEP (the archive is built again: the
        # contents have round numbers of files and batches), the second shows the usual.
        for batch_id in (contents.batches[-1].id + 1, contents.batches[-1].id + 2):
            _add_batch(store, files, batch_id)
            name = "one batch" if batch_id > contents.batches[-1].id + 1 else "first batch"
            _timed(name, results, counting, job.refresh)
        # A file made internal, among the oldest: the public archive is built again.
        flipped = next(obj for obj in contents.objects if obj.visibility == "public")
        _write_index(store, flipped.with_changes(visibility="internal"))
        Catalog(store).update([flipped.digest], [])
        _timed("flip", results, counting, job.refresh)
        _timed("nothing new", results, counting, job.refresh)
        _timed("nothing new, new process", results, counting, SiteJob(counting).refresh)  # type: ignore[arg-type]
        tracemalloc.start()
        sources = SiteSources(store)
        sources.prepare()
        results["sources MiB"] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        del sources
    return results


def _add_batch(store: Any, files: int, batch_id: int) -> None:
    more = make_contents(FILES_PER_BATCH, random.Random(f"more {files} {batch_id}"))  # noqa: S311
    now = utc_timestamp(1_700_000_000 + batch_id * 600)  # after every other batch
    batch = replace(more.batches[0], id=batch_id, uploaded=now)
    objects = [
        obj.with_changes(
            uploads=tuple(replace(up, batch_id=batch_id, uploaded=now) for up in obj.uploads),
            verified_at=now,
            updated_at=now,
        )
        for obj in more.objects
    ]
    write_contents(store, type(more)(objects, [batch], more.rare_digest))
    Catalog(store).update([obj.digest for obj in objects], [batch_id])


def _write_index(store: Any, obj: Any) -> None:
    store.put(index_key(obj.digest), obj.to_json(), content_type="application/json")


ROWS = [
    ("full render: seconds", "full seconds", "{:.2f}"),
    ("full render: pages rendered", "full pages rendered", "{:,.0f}"),
    ("full render: objects written", "full put", "{:,.0f}"),
    ("full render: MiB written", "full written MiB", "{:,.1f}"),
    ("full render: objects read", "full get", "{:,.0f}"),
    ("first new batch (archive grown): seconds", "first batch seconds", "{:.2f}"),
    ("first new batch (archive grown): objects written", "first batch put", "{:,.0f}"),
    ("one new batch: seconds", "one batch seconds", "{:.3f}"),
    ("one new batch: pages rendered", "one batch pages rendered", "{:,.0f}"),
    ("one new batch: objects written", "one batch put", "{:,.0f}"),
    ("one new batch: objects deleted", "one batch delete", "{:,.0f}"),
    ("one new batch: objects read", "one batch get", "{:,.0f}"),
    ("one new batch: KiB written", "one batch written MiB", "{:,.1f}"),
    ("an old file made internal: seconds", "flip seconds", "{:.2f}"),
    ("an old file made internal: pages rendered", "flip pages rendered", "{:,.0f}"),
    ("an old file made internal: objects written", "flip put", "{:,.0f}"),
    ("an old file made internal: objects deleted", "flip delete", "{:,.0f}"),
    ("nothing new: seconds", "nothing new seconds", "{:.4f}"),
    ("nothing new: objects read", "nothing new get", "{:,.0f}"),
    ("nothing new: objects written", "nothing new put", "{:,.0f}"),
    ("nothing new, new process: seconds", "nothing new, new process seconds", "{:.2f}"),
    ("nothing new, new process: objects read", "nothing new, new process get", "{:,.0f}"),
    ("nothing new, new process: objects written", "nothing new, new process put", "{:,.0f}"),
    ("memory of the sources, MiB", "sources MiB", "{:,.1f}"),
]


def print_table(sizes: list[int], measured: list[Results]) -> None:
    heading = [f"{size:,} files" for size in sizes]
    print(f"| measure | {' | '.join(heading)} | {sizes[-1]:,} / {sizes[0]:,} |")
    print("| --- |" + " ---: |" * (len(sizes) + 1))
    for label, name, shape in ROWS:
        values = [results[name] for results in measured]
        if "KiB" in label:
            values = [value * 1024 for value in values]
        first, last = values[0], values[-1]
        ratio = "1.00" if first == last else "—" if first == 0 else f"{last / first:,.2f}"
        print(f"| {label} | {' | '.join(shape.format(value) for value in values)} | {ratio} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="file counts, by commas")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    started = time.perf_counter()
    measured = [measure(size) for size in sizes]
    print(f"site rendering costs ({time.perf_counter() - started:.0f} s in all)")
    print_table(sizes, measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
