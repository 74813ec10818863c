"""How the live catalog's costs grow with the store: 1k, 10k and 100k files side by side.

    .venv/bin/python bench/bench_catalog.py [--sizes 1000,10000,100000] [--rounds 20]
        [--searches 200]

For each size, a fresh LocalStore in a temporary directory gets one index object
a file and one batch record per ten files, written directly, and then its
catalog shards from ``Catalog.rebuild``; how long that took is printed, not
measured. Then, with the store wrapped to count the requests made of it:

- a writer's ``Catalog.update`` of one file (its index object's visibility
  flipped first), of one new batch, and of a batch of the fullest batch shard
  announced again unchanged (as an indexer pass announces the batches whose
  files it verified): median time, objects read and written, bytes moved;
- a loaded ``CatalogView`` following each of those changes, and probing when
  nothing is new (GETs count the probe that finds no next feed entry);
- a replica's first load: objects and bytes read, time, and the memory its copy
  holds (tracemalloc, over a second load, as tracing slows it down);
- searches from a loaded view: a hash prefix, a filename matching three files,
  one matching none, an upload search matching three batches. The view's
  methods are called as ``Files.search`` and ``Uploads.search`` call them (a
  ``refresh()`` that finds the copy fresh, then the scan in a worker thread,
  up to ``MAX_RESULTS`` answers), in one event loop, without HTTP, for a
  caller allowed everything;
- for contrast, the design it replaced: every file entry in one
  ``catalog/files.json`` and every batch in one ``catalog/batches.json``, each
  rewritten whole by every change and re-read whole by every replica noticing
  one (sizes computed from the same entries, not written).

A new batch rewrites the whole batch shard it joins (100 ids a shard); the rows
for the fullest shard show what a batch late in a shard moves. A batch announced
again unchanged writes nothing and tells replicas nothing.

The table shows medians over the rounds (counts: the largest seen) and the
ratio of the largest size to the smallest. "LIST pages" counts what S3 would
answer in pages of 1,000 keys (a LocalStore lists by reading each object).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.catalog_view import CatalogView
from indexer.catalog import Catalog, batch_entry, batch_shard, file_entry, shard_key
from indexer.intake import Batch, BatchFile
from indexer.local_store import LocalStore
from indexer.schema import IndexObject, Upload, Visibility, index_key, summary, utc_timestamp
from indexer.signing import UrlSigner
from indexer.stores import ObjectInfo, ObjectNotFound, Store

FILES_PER_BATCH = 10
LIST_PAGE = 1000  # keys in one S3 ListObjectsV2 answer
WRITE_THREADS = 8
TOOLS = (
    ("gcc", "13.2.0"),
    ("clang", "17.0.6"),
    ("rustc", "1.75.0"),
    ("node", "20.11.0"),
    ("cmake", "3.28.1"),
    ("python", "3.11.7"),
)
PLATFORMS = ("linux64", "macosx64", "win64", "linux64-aarch64")
RARE = "sccache"  # in three filenames and three messages only: what the searches find
JSON = "application/json"


class CountingStore:
    """Passes every call through to a real store, counting requests and the bytes they
    carry (threads share it: a replica loads shards from several)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.region = store.region
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def take(self) -> Counter[str]:
        """The counts since the last take, starting over."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def _count(self, **amounts: int) -> None:
        with self._lock:
            self.counts.update(amounts)

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        try:
            data, info = self._store.get(key)
        except ObjectNotFound:
            self._count(get=1, missing=1)
            raise
        self._count(get=1, read=len(data))
        return data, info

    def put(self, key: str, data: bytes, **options: Any) -> ObjectInfo:
        self._count(put=1, written=len(data))
        return self._store.put(key, data, **options)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        listed = 0
        for info in self._store.list(prefix):
            listed += 1
            yield info
        self._count(list_pages=max(1, math.ceil(listed / LIST_PAGE)), listed=listed)

    def __getattr__(self, name: str) -> Any:
        """Every other call (head, delete, copies, streams…), counted by its name."""
        attribute = getattr(self._store, name)
        if not callable(attribute) or name.startswith("presign"):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._count(**{name: 1})
            return attribute(*args, **kwargs)

        return counted

    def check(self) -> None:
        self._store.check()


# -- the store's contents ----------------------------------------------------


@dataclass
class Contents:
    """What one size's store holds, as written."""

    objects: list[IndexObject]
    batches: list[Batch]
    rare_digest: str


def _message(batch_id: int, tool: str, version: str, is_rare: bool) -> str:
    extra = f" with {RARE} 0.7.4" if is_rare else ""
    return (
        f"Bug {1800000 + batch_id} - {tool} {version} for the nightly toolchains{extra}\n\n"
        f"Built by task {batch_id:022x} on the b-linux worker pool; r=releng"
    )


def _new_batch(batch_id: int, digests: list[str], sizes: list[int], rng: random.Random) -> Batch:
    """Batch `batch_id` of these files (a rare tool in three batches of each store)."""
    tool, version = TOOLS[batch_id % len(TOOLS)]
    uploaded = utc_timestamp(1_700_000_000 + batch_id * 600)
    files = {}
    for digest, size in zip(digests, sizes, strict=True):
        number = rng.randrange(10**6)
        platform = PLATFORMS[number % len(PLATFORMS)]
        files[f"{tool}-{version}-{platform}-{number}.tar.xz"] = BatchFile(
            size=size,
            digest=digest,
            algorithm="sha512",
            visibility="internal" if number % 5 == 0 else "public",
        )
    return Batch(
        id=batch_id,
        author=f"builder{batch_id % 7}@example.com",
        uploaded=uploaded,
        message=_message(batch_id, tool, version, is_rare=False),
        region="local",
        files=files,
    )


def make_contents(files: int, rng: random.Random) -> Contents:
    """`files` index objects, one batch per ten, with realistic names and messages."""
    count = math.ceil(files / FILES_PER_BATCH)
    rare_files = {files // 7, files // 3, files // 2}
    rare_batches = {count // 7 + 1, count // 3 + 1, count // 2 + 1}
    objects: list[IndexObject] = []
    batches: list[Batch] = []
    for batch_id in range(1, count + 1):
        tool, version = TOOLS[batch_id % len(TOOLS)]
        uploaded = utc_timestamp(1_700_000_000 + batch_id * 600)
        message = _message(batch_id, tool, version, is_rare=batch_id in rare_batches)
        author = f"builder{batch_id % 7}@example.com"
        batch_files = {}
        first = (batch_id - 1) * FILES_PER_BATCH
        for number in range(first, min(files, first + FILES_PER_BATCH)):
            digest = rng.randbytes(64).hex()
            size = rng.randrange(1 << 20, 1 << 31)
            name = RARE if number in rare_files else tool
            filename = f"{name}-{version}-{PLATFORMS[number % len(PLATFORMS)]}-{number}.tar.xz"
            visibility: Visibility = "internal" if number % 5 == 0 else "public"
            objects.append(
                IndexObject(
                    digest=digest,
                    size=size,
                    visibility=visibility,
                    instances=("local",),
                    uploads=(Upload(batch_id, filename, author, summary(message), uploaded),),
                    verified_at=uploaded,
                    updated_at=uploaded,
                )
            )
            batch_files[filename] = BatchFile(size, digest, "sha512", visibility)
        batches.append(Batch(batch_id, author, uploaded, message, "local", batch_files))
    return Contents(objects, batches, objects[min(rare_files)].digest)


def _index_json(index_object: IndexObject) -> bytes:
    """What ``IndexObject.to_json`` writes, without its schema check (a quarter of the
    set-up at 100k files); the first object of each store is checked against it."""
    text = json.dumps(
        index_object.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return text.encode("utf-8")


def write_contents(store: Store, contents: Contents) -> None:
    """Index objects and batch records, several at a time (each put waits for its fsync)."""
    assert _index_json(contents.objects[0]) == contents.objects[0].to_json()
    items = [(index_key(obj.digest), _index_json(obj)) for obj in contents.objects]
    items += [(batch.key, batch.to_json()) for batch in contents.batches]
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        for _ in pool.map(lambda item: store.put(item[0], item[1], content_type=JSON), items):
            pass


def set_up(root: Path, files: int, rng: random.Random) -> tuple[LocalStore, Contents]:
    started = time.perf_counter()
    store = LocalStore(root, signer=UrlSigner(secrets.token_bytes(32)))
    contents = make_contents(files, rng)
    write_contents(store, contents)
    written = time.perf_counter()
    Catalog(store).rebuild(contents.objects, contents.batches)
    done = time.perf_counter()
    print(
        f"set-up, {files:,} files and {len(contents.batches):,} batches: "
        f"{done - started:.1f} s (records {written - started:.1f} s, "
        f"Catalog.rebuild {done - written:.1f} s)",
        flush=True,
    )
    return store, contents


# -- measures ------------------------------------------------------------------


Results = dict[str, float]


async def timed_refresh(view: CatalogView) -> float:
    started = time.perf_counter()
    await view.refresh()
    return time.perf_counter() - started


def _record(results: dict[str, list[float]], prefix: str, counts: Counter[str]) -> None:
    for name in ("get", "missing", "put", "read", "written", "list_pages", "delete", "head"):
        results.setdefault(f"{prefix} {name}", []).append(counts[name])


@dataclass
class Writes:
    """A writer and a loaded replica over the same store, each counted apart."""

    store: LocalStore
    writer_store: CountingStore
    view: CatalogView
    view_store: CountingStore
    runner: asyncio.Runner
    results: dict[str, list[float]]

    def announce(self, kind: str, digests: list[str], batch_ids: list[int]) -> None:
        """One ``Catalog.update``, then the replica following it, each timed and counted."""
        writer = Catalog(self.writer_store)
        self.writer_store.take()
        started = time.perf_counter()
        writer.update(digests, batch_ids)
        self.results.setdefault(f"update {kind} s", []).append(time.perf_counter() - started)
        _record(self.results, f"update {kind}", self.writer_store.take())
        self.follow(f"follow {kind}")

    def follow(self, name: str) -> None:
        self.view_store.take()
        self.view.invalidate()
        self.results.setdefault(f"{name} s", []).append(self.runner.run(timed_refresh(self.view)))
        _record(self.results, name, self.view_store.take())


def measure_writes(writes: Writes, contents: Contents, rounds: int) -> None:
    """Each round: one file's visibility flipped, one new batch, and one batch of the
    fullest batch shard announced again (as an indexer pass does for the batches whose
    files it verified), each followed by the replica; and a replica probe, nothing new."""
    rng = random.Random(rounds)  # noqa: S311 - the same contents every run, not secrets
    objects = contents.objects
    again = min(500, len(contents.batches) // 2)
    for round_number in range(rounds):
        position = (round_number * 7919) % len(objects)
        flipped = objects[position].with_changes(
            visibility="internal" if objects[position].visibility == "public" else "public"
        )
        objects[position] = flipped
        writes.store.put(index_key(flipped.digest), flipped.to_json(), content_type=JSON)
        writes.announce("file", [flipped.digest], [])
        answers = writes.runner.run(
            writes.view.files(flipped.digest, is_prefix=True, allowed=everything)
        )
        assert json.loads(answers[0])["visibility"] == flipped.visibility

        digests = [rng.randbytes(64).hex() for _ in range(FILES_PER_BATCH)]
        sizes = [rng.randrange(1 << 20, 1 << 31) for _ in digests]
        batch = _new_batch(len(contents.batches) + 1, digests, sizes, rng)
        contents.batches.append(batch)
        writes.store.put(batch.key, batch.to_json(), content_type=JSON)
        writes.announce("batch", [], [batch.id])
        found = writes.runner.run(
            writes.view.batches(f"bug {1800000 + batch.id}", allowed=everything)
        )
        assert len(found) == 1

        writes.announce("again", [], [again])
        writes.follow("idle")


def measure_load(
    store: LocalStore, runner: asyncio.Runner
) -> tuple[Results, CatalogView, CountingStore]:
    """A replica's first load, counted and timed; then another's memory, traced."""
    view_store = CountingStore(store)
    view = CatalogView(Catalog(view_store), ttl=1e9)
    seconds = runner.run(timed_refresh(view))
    counts = view_store.take()
    results = {
        "load s": seconds,
        "load get": counts["get"],
        "load list_pages": counts["list_pages"],
        "load read": counts["read"],
    }
    traced = CatalogView(Catalog(store), ttl=1e9)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    runner.run(traced.refresh())
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["memory held"] = current - before
    results["memory peak"] = peak - before
    del traced
    return results, view, view_store


def everything(visibilities: frozenset[str]) -> bool:
    """A caller who may read every file."""
    return True


async def search_times(
    view: CatalogView, search: Callable[[], Awaitable[list[Any]]], rounds: int
) -> tuple[list[float], int]:
    """Per search as the handlers make it: the refresh it awaits, then the scan (in a
    worker thread), up to MAX_RESULTS answers."""
    times = []
    found: list[Any] = []
    for _ in range(rounds):
        started = time.perf_counter()
        found = await search()
        times.append(time.perf_counter() - started)
    return times, len(found)


def measure_searches(
    view: CatalogView,
    view_store: CountingStore,
    contents: Contents,
    rounds: int,
    runner: asyncio.Runner,
) -> Results:
    prefix = contents.rare_digest[:16]
    searches: dict[str, tuple[Callable[[], Awaitable[list[Any]]], int]] = {
        "prefix": (lambda: view.files(prefix, is_prefix=True, allowed=everything), 1),
        "name few": (lambda: view.files(RARE, is_prefix=False, allowed=everything), 3),
        "name none": (
            lambda: view.files("no-such-tool-9.9.9", is_prefix=False, allowed=everything),
            0,
        ),
        "upload": (lambda: view.batches(RARE, allowed=everything), 3),
    }
    view_store.take()
    results: Results = {}
    for name, (search, expected) in searches.items():
        times, matches = runner.run(search_times(view, search, rounds))
        assert matches == expected, f"{name}: {matches} matches, not {expected}"
        results[f"search {name} s"] = statistics.median(times)
    results["search reads"] = sum(view_store.take().values())
    return results


def old_design(contents: Contents) -> Results:
    """The sizes of the two whole catalog objects the shards replaced."""

    def dumped(member: str, entries: list[dict[str, Any]], sort_key: str) -> int:
        ordered = sorted(entries, key=lambda entry: entry[sort_key])
        text = json.dumps({member: ordered}, sort_keys=True, separators=(",", ":"))
        return len(text.encode("utf-8"))

    return {
        "old files": dumped("files", [file_entry(obj) for obj in contents.objects], "digest"),
        "old batches": dumped("batches", [batch_entry(b) for b in contents.batches], "id"),
    }


def shard_sizes(store: LocalStore, contents: Contents) -> Results:
    catalog = Catalog(store)
    sizes = {shard: store.head(shard_key(shard)).size for shard in catalog.shards()}
    files = [size for shard, size in sizes.items() if shard.startswith("files/")]
    batches = [size for shard, size in sizes.items() if shard.startswith("batches/")]
    return {
        "file shards": len(files),
        "file shard bytes": statistics.mean(files),
        "batch shards": len(batches),
        "batch shard largest": max(batches),
        "batch shard next": sizes.get(batch_shard(len(contents.batches) + 1), 0),
    }


def measure(files: int, rounds: int, searches: int) -> Results:
    rng = random.Random(files)  # noqa: S311 - the same contents every run, not secrets
    with tempfile.TemporaryDirectory() as scratch, asyncio.Runner() as runner:
        store, contents = set_up(Path(scratch), files, rng)
        results = shard_sizes(store, contents)
        loaded, view, view_store = measure_load(store, runner)
        results |= loaded
        writes = Writes(store, CountingStore(store), view, view_store, runner, {})
        measure_writes(writes, contents, rounds)
        for name, values in writes.results.items():
            # Requests are the same every round, or should be: the most seen shows it.
            is_count = name.split()[-1] in ("get", "put", "list_pages", "delete", "head")
            results[name] = max(values) if is_count else statistics.median(values)
        results |= measure_searches(view, view_store, contents, searches, runner)
        results |= old_design(contents)
    return results


# -- the table -----------------------------------------------------------------


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _kib(value: float) -> str:
    return f"{value / 1024:,.1f}"


def _mib(value: float) -> str:
    return f"{value / 1024**2:,.2f}"


def _ms(value: float) -> str:
    return f"{value * 1e3:,.2f}"


def _us(value: float) -> str:
    return f"{value * 1e6:,.1f}"


Row = tuple[str, Callable[[Results], float], Callable[[float], str]]


def _field(name: str) -> Callable[[Results], float]:
    return lambda results: results[name]


def _rows() -> list[Row]:
    rows: list[Row] = [
        ("file shards in the store", _field("file shards"), _count),
        ("file shard, mean KiB", _field("file shard bytes"), _kib),
        ("batch shards in the store", _field("batch shards"), _count),
        ("batch shard, largest KiB", _field("batch shard largest"), _kib),
        ("batch shard the next batch joins, KiB", _field("batch shard next"), _kib),
    ]
    for kind, label in (("file", "one file changed"), ("batch", "one new batch")):
        rows += [
            (f"update, {label}: ms", _field(f"update {kind} s"), _ms),
            (f"update, {label}: GETs", _field(f"update {kind} get"), _count),
            (f"update, {label}: PUTs", _field(f"update {kind} put"), _count),
            (f"update, {label}: KiB written", _field(f"update {kind} written"), _kib),
            (f"replica follows {label}: ms", _field(f"follow {kind} s"), _ms),
            (f"replica follows {label}: GETs", _field(f"follow {kind} get"), _count),
            (f"replica follows {label}: KiB read", _field(f"follow {kind} read"), _kib),
        ]
    rows += [
        ("update, a batch of the fullest shard again: ms", _field("update again s"), _ms),
        ("update, a batch of the fullest shard again: KiB read", _field("update again read"), _kib),
        (
            "update, a batch of the fullest shard again: KiB written",
            _field("update again written"),
            _kib,
        ),
        ("replica follows that: ms", _field("follow again s"), _ms),
        ("replica follows that: KiB read", _field("follow again read"), _kib),
        ("replica probe, nothing new: ms", _field("idle s"), _ms),
        ("replica probe, nothing new: GETs", _field("idle get"), _count),
        ("replica load: s", _field("load s"), lambda value: f"{value:,.3f}"),
        ("replica load: GETs", _field("load get"), _count),
        ("replica load: LIST pages", _field("load list_pages"), _count),
        ("replica load: MiB read", _field("load read"), _mib),
        ("replica memory held: MiB", _field("memory held"), _mib),
        ("replica memory held: bytes per file", _per_file("memory held"), _count),
        ("replica memory peak in load: MiB", _field("memory peak"), _mib),
    ]
    for name, label in (
        ("prefix", "hash prefix (1 match)"),
        ("name few", f"filename {RARE!r} (3 matches)"),
        ("name none", "filename, no match"),
        ("upload", f"upload {RARE!r} (3 matches)"),
    ):
        rows.append((f"search, {label}: µs", _field(f"search {name} s"), _us))
    rows += [
        ("store requests over all searches", _field("search reads"), _count),
        ("old files.json: KiB rewritten per file change", _field("old files"), _kib),
        ("old batches.json: KiB rewritten per new batch", _field("old batches"), _kib),
        ("old / new, bytes written per file change", _old_ratio("files", "file"), _ratio),
        ("old / new, bytes read per followed file change", _follow_ratio("file"), _ratio),
        ("old / new, bytes written per new batch", _old_ratio("batches", "batch"), _ratio),
    ]
    return rows


def _per_file(name: str) -> Callable[[Results], float]:
    return lambda results: results[name] / results["file count"]


def _old_ratio(old: str, kind: str) -> Callable[[Results], float]:
    return lambda results: results[f"old {old}"] / results[f"update {kind} written"]


def _follow_ratio(kind: str) -> Callable[[Results], float]:
    return lambda results: results["old files"] / results[f"follow {kind} read"]


def _ratio(value: float) -> str:
    return f"{value:,.0f} times"


def print_table(sizes: list[int], measured: list[Results]) -> None:
    heading = [f"{size:,} files" for size in sizes]
    print(f"| measure | {' | '.join(heading)} | {sizes[-1]:,} / {sizes[0]:,} |")
    print("| --- |" + " ---: |" * (len(sizes) + 1))
    for label, value_of, show in _rows():
        values = [value_of(results) for results in measured]
        first, last = values[0], values[-1]
        if first == last:
            ratio = "1.00"
        elif first == 0:
            ratio = "—"
        else:
            ratio = f"{last / first:,.2f}"
        print(f"| {label} | {' | '.join(show(value) for value in values)} | {ratio} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="file counts, by commas")
    parser.add_argument("--rounds", type=int, default=20, help="updates measured per size")
    parser.add_argument("--searches", type=int, default=200, help="rounds of each search")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    started = time.perf_counter()
    measured = []
    for size in sizes:
        results = measure(size, args.rounds, args.searches)
        results["file count"] = size
        measured.append(results)
    print(
        f"catalog costs, medians of {args.rounds} updates and {args.searches} searches "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    print_table(sizes, measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
