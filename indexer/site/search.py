"""The site's full-text search: a static Pagefind bundle under ``pagefind/``.

One record a file page (its filenames, digest, uploaders and the messages it
came with) and one a batch page (its message, author and filenames): only what
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

BUNDLE = "pagefind"
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
        )
        for batch in site.batches
    ]
    return sorted(records, key=lambda record: record.url)


def _file_record(file: SiteFile) -> SearchRecord:
    lines = [*file.filenames, f"sha512 {file.digest}"]
    lines += [f"{arrival.author}: {arrival.message}" for arrival in file.arrivals]
    return SearchRecord(url=f"f/{file.digest}/index.html", title=file.name, text="\n".join(lines))


def search_files(records: Iterable[SearchRecord]) -> list[tuple[str, bytes]]:
    """The Pagefind bundle of `records`, as (path under the site's root, bytes) sorted
    by path."""
    ordered = sorted(records, key=lambda record: record.url)
    files = bundle(
        [
            {"url": record.url, "content": record.text, "meta": {"title": record.title}}
            for record in ordered
        ]
    )
    return sorted((f"{BUNDLE}/{path}", data) for path, data in files if path not in _UNUSED)


class SearchBundle:
    """One view's search bundle, built again only when its records change: most passes
    change what some page shows (a verification, a region), not what the search finds,
    and Pagefind takes about a minute for 100,000 records."""

    def __init__(self) -> None:
        self._records: tuple[SearchRecord, ...] | None = None
        self._files: list[tuple[str, bytes]] = []

    def files(self, records: Sequence[SearchRecord]) -> list[tuple[str, bytes]]:
        if self._records != tuple(records):
            self._files = search_files(records)
            self._records = tuple(records)
        return self._files
