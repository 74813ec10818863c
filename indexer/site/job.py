"""Rendering the site of every view into the store, following what changed.

A :class:`SiteJob` lives as long as its indexer: it keeps the site's sources
(:mod:`indexer.site.sources`) and, for each view, what every page was last
rendered from. A pass follows the change feed and the audit log, rebuilds
the views' models in memory, renders only the pages whose inputs changed,
and publishes only the pages whose bytes changed. A pass with nothing new
reads two absent objects and writes nothing. A new process (or one that
finds another wrote the site since) renders every page once, and still
writes only what differs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import jinja2

from indexer.site.model import VIEWS, Memo, Site, View, build
from indexer.site.publish import Published, Publisher
from indexer.site.render import Spec, environment, render, specs
from indexer.site.search import SearchBundle
from indexer.site.sources import SiteSources
from indexer.stores import Store

logger = logging.getLogger(__name__)


class SiteJob:
    """Renders and publishes the site of one store."""

    def __init__(self, store: Store, *, download_base: str = "$URL") -> None:
        self.sources = SiteSources(store)
        self._download_base = download_base
        self._publishers = {view: Publisher(store, view) for view in VIEWS}
        self._search = {view: SearchBundle() for view in VIEWS}
        # What each page was last rendered from; None until every page has been.
        self._rendered: dict[View, Mapping[str, Spec]] | None = None
        self._env: jinja2.Environment = environment()
        self._memos = {view: Memo() for view in VIEWS}

    def refresh(self) -> dict[View, Published] | None:
        """Bring the site up to date with the store; what each view's publish did, or
        None when it showed everything already."""
        changes = self.sources.follow()
        if changes.loaded or changes.everything:
            # Another process wrote the site, or every source was read again: nothing
            # this one rendered is trusted.
            self._rendered = None
            for publisher in self._publishers.values():
                publisher.forget()
        if not changes:
            self.sources.save_position()  # the feed moved past nothing the site shows
            return None
        return self._publish_all()

    def rebuild(self) -> dict[View, Published]:
        """Make the sources again from the whole store and render every page."""
        self.sources.rebuild()
        self._rendered = None
        for publisher in self._publishers.values():
            publisher.forget()
        return self._publish_all()

    def _publish_all(self) -> dict[View, Published]:
        rendered = self._rendered or {view: {} for view in VIEWS}
        result = {}
        for view in VIEWS:
            result[view], rendered[view] = self._publish(view, self.site(view), rendered[view])
        self._rendered = rendered
        self.sources.save_position()
        return result

    def site(self, view: View) -> Site:
        sources, memo = self.sources, self._memos[view]
        memo.keep_only(sources.files.keys(), sources.batches.keys())
        return build(
            view, sources.files.values(), sources.batches.values(), sources.history, memo=memo
        )

    def _publish(
        self, view: View, site: Site, before: Mapping[str, Spec]
    ) -> tuple[Published, Mapping[str, Spec]]:
        wanted = specs(site, download_base=self._download_base, search=self._search[view].files)
        unchanged = {path for path, spec in wanted.items() if _same(before.get(path), spec)}
        published = self._publishers[view].publish(
            wanted, lambda path: render(self._env, wanted[path]), unchanged=unchanged
        )
        if published.written or published.deleted:
            logger.info(
                "site published",
                extra={"view": view, "written": published.written, "deleted": published.deleted},
            )
        return published, wanted


def _same(before: Spec | None, spec: Spec) -> bool:
    return before is spec or before == spec


def render_site(store: Store, *, download_base: str = "$URL") -> dict[View, Published]:
    """Render both views from the whole store and publish them (``rebuild``)."""
    return SiteJob(store, download_base=download_base).rebuild()
