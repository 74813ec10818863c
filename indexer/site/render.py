"""The browsable site's pages, rendered with jinja2 (autoescaped) from a :class:`Site`.

Every page is ``<path>/index.html`` with links relative to itself, so the site
works as files from a bucket or a CDN as well as from the gateway. Rendering
is a pure function of the model: the same sources give the same bytes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from indexer.audit import AuditRecord
from indexer.site.model import Site, SiteFile, uploader_slug

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SIZE = 100
STYLE = "assets/style.css"
ICON = "assets/favicon.svg"


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
    return env


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe(event: AuditRecord) -> str:
    if event.event == "visibility":
        return f"made {event.details.get('to')} by {event.who}"
    if event.event == "delete":
        return f"deleted by {event.who}"
    return f"verified, uploaded by {event.who}"


def pages(site: Site, *, download_base: str = "$URL") -> Iterator[tuple[str, bytes]]:
    """Every page of the site, as (path under the site's root, bytes), in path order
    within each kind."""
    env = environment()
    yield STYLE, (TEMPLATES / "style.css").read_bytes()
    yield ICON, (TEMPLATES / "favicon.svg").read_bytes()
    yield (
        "index.html",
        _render(env, "home.html", site, 0, batches=site.batches[:20], chart=chart(site)),
    )
    yield from _listing(env, site, "files", "files.html", site.files, "files")
    yield from _listing(env, site, "batches", "batches.html", site.batches, "batches")
    yield "uploaders/index.html", _render(env, "uploaders.html", site, 1)
    for file in site.files:
        yield (
            f"f/{file.digest}/index.html",
            _render(
                env,
                "file.html",
                site,
                2,
                file=file,
                manifest=manifest(file),
                curl_url=f"{download_base}/sha512/{file.digest}",
            ),
        )
    known = {file.digest for file in site.files}
    for batch in site.batches:
        yield (
            f"b/{batch.id}/index.html",
            _render(env, "batch.html", site, 2, batch=batch, known=known),
        )
    for uploader in site.uploaders:
        yield (
            f"u/{uploader.slug}/index.html",
            _render(env, "uploader.html", site, 2, uploader=uploader, batches=uploader.batches),
        )


def _listing(
    env: jinja2.Environment,
    site: Site,
    listing: str,
    template: str,
    items: tuple[Any, ...],
    name: str,
) -> Iterator[tuple[str, bytes]]:
    count = max(1, -(-len(items) // PAGE_SIZE))
    for page in range(1, count + 1):
        chunk = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        path = f"{listing}/index.html" if page == 1 else f"{listing}/{page}/index.html"
        depth = 1 if page == 1 else 2
        yield (
            path,
            _render(
                env,
                template,
                site,
                depth,
                **{name: chunk},
                page=page,
                pages=count,
                listing=listing,
                total=len(items),
            ),
        )


def _render(
    env: jinja2.Environment, template: str, site: Site, depth: int, **context: Any
) -> bytes:
    text = env.get_template(template).render(
        site=site, view=site.view, root="../" * depth, **context
    )
    return text.encode("utf-8")


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
            f"{month.uploads} batches</title></rect>"
        )
        y = height - pad - (height - 2 * pad) * month.stored_bytes / most_bytes
        points.append(f"{x + step / 2:.1f},{y:.1f}")
    labels = (
        f'<text x="{pad}" y="{height - 6}">{escape(months[0].month)}</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">'
        f"{escape(months[-1].month)}</text>"
        f'<text x="{pad}" y="14">{escape(human_size(most_bytes))} stored (line), '
        f"up to {most_uploads} batches a month (bars)</text>"
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
