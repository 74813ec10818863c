"""The browsable site's pages, rendered with jinja2 (autoescaped) from a :class:`Site`.

Every page is ``<path>/index.html`` with links relative to itself, so the site
works as files from a bucket or a CDN as well as from the gateway. Rendering
is a pure function of the model: the same sources give the same bytes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from indexer.site.model import Site, SiteFile, uploader_slug
from indexer.site.search import SearchRecord, bundles, partition, site_records
from indexer.site.sources import Event

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SIZE = 100
UPLOADER_BATCHES = 100  # the newest an uploader's page lists
STYLE = "assets/style.css"
ICON = "assets/favicon.svg"
SEARCH = "assets/search.js"
ARCHIVED = "pagefind/archive.json"
Search = Callable[[Sequence[SearchRecord]], list[tuple[str, bytes]]]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        human=human_size,
        date=lambda moment: str(moment)[:10],
        first_line=lambda text: str(text).strip().split("\n", 1)[0],
        slug=uploader_slug,
        shell=shlex.quote,
        describe=describe,
    )
    env.globals.update(manifest=manifest)
    return env


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe(event: Event) -> str:
    if event.event == "visibility":
        return f"made {event.to} by {event.who}"
    if event.event == "delete":
        return f"deleted by {event.who}"
    return f"verified, uploaded by {event.who}"


@dataclass(frozen=True, slots=True)
class Page:
    """A page to render: its template and everything it shows (compared, so a page
    whose inputs did not change is not rendered again)."""

    template: str
    depth: int
    context: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Asset:
    """A file served as it is (a stylesheet, an icon, the search index)."""

    data: bytes


Spec = Page | Asset


def specs(site: Site, *, download_base: str = "$URL", search: Search = bundles) -> dict[str, Spec]:
    """Every page of the site by its path under the site's root, as what to render, and
    the search bundle of its file and batch pages (`search` builds it from their records).

    Listings are numbered from the oldest item, a hundred to a page, so a new file or
    batch changes only the newest numbered page and the first one (the newest hundred);
    no numbered page shows a count that grows.
    """
    found: dict[str, Spec] = {
        STYLE: Asset((TEMPLATES / "style.css").read_bytes()),
        ICON: Asset((TEMPLATES / "favicon.svg").read_bytes()),
    }
    records = site_records(site)
    # A site with nothing to find has no search box: Pagefind's scripts fail on an empty index.
    if records:
        found[SEARCH] = Asset((TEMPLATES / "search.js").read_bytes())
        found.update((path, Asset(data)) for path, data in search(records))
        # Whether there is an archive to merge: the search box reads it, so that no page
        # changes when the archive first appears.
        archived = json.dumps({"archive": bool(partition(records)[0])}).encode()
        found[ARCHIVED] = Asset(archived)

    def page(path: str, template: str, **context: Any) -> None:
        shared = (("view", site.view), ("has_search", bool(records)))
        found[path] = Page(template, path.count("/"), (*shared, *context.items()))

    page(
        "index.html",
        "home.html",
        files=len(site.files),
        stored=site.total_bytes,
        batch_count=len(site.batches),
        uploader_count=len(site.uploaders),
        batches=site.batches[:20],
        chart=chart(site),
    )
    for listing, template, items in (
        ("files", "files.html", site.files),
        ("batches", "batches.html", site.batches),
    ):
        for path, context in _listing(listing, items):
            page(path, template, **context)
    page(
        "uploaders/index.html",
        "uploaders.html",
        uploaders=tuple((up.author, up.slug, len(up.batches)) for up in site.uploaders),
    )
    for file in site.files:
        page(
            f"f/{file.digest}/index.html",
            "file.html",
            file=file,
            download_base=download_base,
        )
    known = {file.digest for file in site.files}
    for batch in site.batches:
        page(
            f"b/{batch.id}/index.html",
            "batch.html",
            batch=batch,
            known=tuple(digest in known for _, digest, _ in batch.files),
        )
    for uploader in site.uploaders:
        page(
            f"u/{uploader.slug}/index.html",
            "uploader.html",
            author=uploader.author,
            count=len(uploader.batches),
            batches=uploader.batches[:UPLOADER_BATCHES],
        )
    return found


def _listing(listing: str, items: tuple[Any, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The listing's pages: the newest hundred items first, then numbered pages from
    the oldest (page 1 holds the oldest hundred), each shown newest first."""
    numbered = -(-len(items) // PAGE_SIZE)
    first_older = (len(items) - PAGE_SIZE - 1) // PAGE_SIZE + 1  # the page of the next item
    yield (
        f"{listing}/index.html",
        {
            "items": items[:PAGE_SIZE],
            "total": len(items),
            "page": None,
            "newer": None,
            "older": first_older if len(items) > PAGE_SIZE else None,
        },
    )
    oldest_first = items[::-1]
    for number in range(1, numbered + 1):
        chunk = oldest_first[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        yield (
            f"{listing}/{number}/index.html",
            {
                "items": chunk[::-1],
                "total": None,
                "page": number,
                "first": (number - 1) * PAGE_SIZE + 1,
                "newer": number + 1 if number < numbered else 0,  # 0: the first page
                "older": number - 1 if number > 1 else None,
            },
        )


def render(env: jinja2.Environment, spec: Spec) -> bytes:
    """The bytes of one page."""
    if isinstance(spec, Asset):
        return spec.data
    text = env.get_template(spec.template).render(root="../" * spec.depth, **dict(spec.context))
    return text.encode("utf-8")


def pages(site: Site, *, download_base: str = "$URL") -> Iterator[tuple[str, bytes]]:
    """Every page of the site rendered, as (path, bytes), in path order."""
    env = environment()
    for path, spec in sorted(specs(site, download_base=download_base).items()):
        yield path, render(env, spec)


def manifest(file: SiteFile) -> str:
    """The file's ``manifest.tt`` entry, as tooltool.py reads it."""
    entry = {
        "filename": file.name,
        "size": file.size,
        "algorithm": "sha512",
        "digest": file.digest,
        "visibility": file.visibility,
    }
    return json.dumps([entry], indent=2)


def _batches(count: int) -> str:
    return f"{count} batch" if count == 1 else f"{count} batches"


def chart(site: Site) -> Markup:
    """Bytes stored (line) and batches posted (bars) by month, as inline SVG."""
    months = site.months[-24:]
    if not months:
        return Markup("")
    width, height, pad = 480, 160, 24
    step = (width - 2 * pad) / max(1, len(months))
    most_bytes = max(month.stored_bytes for month in months) or 1
    most_uploads = max(month.uploads for month in months) or 1
    bars, points = [], []
    for index, month in enumerate(months):
        x = pad + index * step
        bar = (height - 2 * pad) * month.uploads / most_uploads
        bars.append(
            f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{height - pad - bar:.1f}" '
            f'width="{step * 0.7:.1f}" height="{bar:.1f}"><title>{escape(month.month)}: '
            f"{_batches(month.uploads)}</title></rect>"
        )
        y = height - pad - (height - 2 * pad) * month.stored_bytes / most_bytes
        points.append(f"{x + step / 2:.1f},{y:.1f}")
    labels = (
        f'<text x="{pad}" y="{height - 6}">{escape(months[0].month)}</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">'
        f"{escape(months[-1].month)}</text>"
        f'<text x="{pad}" y="14">{escape(human_size(most_bytes))} stored (line), '
        f"up to {_batches(most_uploads)} a month (bars)</text>"
    )
    # Made of numbers and escaped text only.
    return Markup(  # noqa: S704
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="Bytes stored and batches by month">'
        + "".join(bars)
        + f'<polyline class="line" points="{" ".join(points)}"/>'
        + labels
        + "</svg>"
    )
