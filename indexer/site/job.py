"""Rendering the whole site of every view from the store into the store."""

from __future__ import annotations

import json
import logging
from collections import defaultdict

from indexer.audit import AuditLog, AuditRecord
from indexer.catalog import Catalog
from indexer.index import readable_index_objects
from indexer.intake import Batch
from indexer.schema import IndexObject
from indexer.site.model import VIEWS, build
from indexer.site.publish import Published, publish
from indexer.site.render import pages
from indexer.stores import ObjectNotFound, Regions, Store

logger = logging.getLogger(__name__)


Sources = tuple[list[IndexObject], list[Batch], dict[str, list[AuditRecord]]]


def site_sources(store: Store) -> Sources:
    """What the site is made of: every readable index object, every batch record, and
    the audit log's records by digest."""
    events: dict[str, list[AuditRecord]] = defaultdict(list)
    for record in AuditLog(store).records():
        if not isinstance(record, str) and record.digest is not None:
            events[record.digest].append(record)
    return readable_index_objects(store), Catalog(store).batch_records(), events


def render_site(regions: Regions, *, download_base: str = "$URL") -> dict[str, Published]:
    """Render both views from the sources and publish them; what each publish wrote."""
    store = regions.index
    sources = site_sources(store)
    return {
        view: publish(store, view, pages(build(view, *sources), download_base=download_base))
        for view in VIEWS
    }


SITE_STATE = "feed/site.json"  # the feed entry the site was last rendered at (not site state)


def refresh_site(regions: Regions) -> dict[str, Published] | None:
    """Render the site again when the catalog changed since it was last rendered (the
    change feed moved), so a file made internal leaves the public site within the pass
    that follows; None when nothing changed."""
    store = regions.index
    head = Catalog(store).feed.head()
    try:
        raw, _ = store.get(SITE_STATE)
        rendered_at = json.loads(raw).get("seq")
    except (ObjectNotFound, ValueError, AttributeError):
        rendered_at = None
    if rendered_at == head:
        return None
    published = render_site(regions)
    store.put(SITE_STATE, json.dumps({"seq": head}).encode(), content_type="application/json")
    return published
