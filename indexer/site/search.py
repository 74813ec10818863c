"""The site's full-text search: a static Pagefind bundle under ``pagefind/``.

One record a file page (its filenames and digest) and one a batch page (its
message, author and filenames): only what
those pages of the same view show, so the public bundle knows nothing the
public pages do not. The browser searches the bundle with Pagefind's own
scripts, served from the site like any page.

The bundle is a pure function of the records: they are added in URL order
(Pagefind numbers pages in the order they arrive, and names its files by the
hashes of their contents), so the same site gives the same bytes and a
rebuild writes nothing new. Records rather than HTML files for the same
reason: Pagefind takes a directory's pages in the order the filesystem lists
them, and two filesystems give two different bundles of the same pages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from indexer.site.model import Site, SiteFile
from indexer.site.pagefind_service import bundle

BUNDLE = "pagefind"  # the recent records' bundle, and the search box's scripts
ARCHIVE = "pagefind-archive"
STEP = 10_000  # records the archive grows by
# What Pagefind writes that the default UI never loads: its other two UIs, the highlighting
# script, and the WebAssembly for pages of no language (every record is English).
_UNUSED = frozenset(
    {
        "pagefind-component-ui.css",
        "pagefind-component-ui.js",
        "pagefind-modular-ui.css",
        "pagefind-modular-ui.js",
        "pagefind-highlight.js",
        "wasm.unknown.pagefind",
    }
)


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """One search result: the page it leads to and the text it is found by."""

    url: str  # the page's path under the site's root, as render.pages() names it
    title: str
    text: str
    age: str = ""  # when the file was verified or the batch posted: what splits bundles


def site_records(site: Site) -> list[SearchRecord]:
    """The records of `site`'s file and batch pages, in URL order."""
    records = [_file_record(file) for file in site.files]
    records += [
        SearchRecord(
            url=f"b/{batch.id}/index.html",
            title=f"Batch #{batch.id}",
            text="\n".join(
                [f"Batch #{batch.id} by {batch.author}", batch.message]
                + [name for name, _, _ in batch.files]
            ),
            age=batch.uploaded,
        )
        for batch in site.batches
    ]
    return sorted(records, key=lambda record: record.url)


def _file_record(file: SiteFile) -> SearchRecord:
    # Who uploaded it and why are its batches' records: a new batch naming an old file
    # (the same bytes uploaded again) changes the recent bundle, not the archive's.
    lines = [*file.filenames, f"sha512 {file.digest}"]
    return SearchRecord(
        url=f"f/{file.digest}/index.html",
        title=file.name,
        text="\n".join(lines),
        age=file.verified_at,
    )


def partition(records: Iterable[SearchRecord]) -> tuple[list[SearchRecord], list[SearchRecord]]:
    """The archive (the oldest records, a whole number of steps of them) and the recent
    ones (at least one, at most a step): a new file or batch changes the recent bundle
    only, and the archive is built again when it grows by a step or a record in it
    changes (a file made internal leaves it in the pass that follows)."""
    by_age = sorted(records, key=lambda record: (record.age, record.url))
    cut = (len(by_age) - 1) // STEP * STEP if by_age else 0
    return by_age[:cut], by_age[cut:]


def search_files(records: Iterable[SearchRecord], *, name: str = BUNDLE) -> list[tuple[str, bytes]]:
    """The Pagefind bundle of `records` under `name`/, as (path under the site's root,
    bytes) sorted by path."""
    ordered = sorted(records, key=lambda record: record.url)
    files = bundle(
        [
            {"url": record.url, "content": record.text, "meta": {"title": record.title}}
            for record in ordered
        ]
    )
    return sorted((f"{name}/{path}", data) for path, data in files if path not in _UNUSED)


class SearchBundle:
    """One view's search bundles, each built again only when its records change: most
    passes change what some page shows (a verification, a region), not what the search
    finds, and Pagefind takes about a minute for 100,000 records. The recent records
    have their own bundle (``pagefind/``, with the search box's scripts), merged by the
    box with the archive's (``pagefind-archive/``)."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[tuple[SearchRecord, ...], list[tuple[str, bytes]]]] = {}

    def files(self, records: Sequence[SearchRecord]) -> list[tuple[str, bytes]]:
        archive, recent = partition(records)
        found: list[tuple[str, bytes]] = []
        for name, part in ((ARCHIVE, archive), (BUNDLE, recent)):
            if not part:
                self._built.pop(name, None)
                continue
            key = tuple(part)
            built = self._built.get(name)
            if built is None or built[0] != key:
                built = (key, search_files(part, name=name))
                self._built[name] = built
            found += built[1]
        return sorted(found)


def bundles(records: Sequence[SearchRecord]) -> list[tuple[str, bytes]]:
    """Both bundles of `records`, built from nothing."""
    return SearchBundle().files(records)
