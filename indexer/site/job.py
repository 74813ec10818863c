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

import contextlib
import logging
from collections.abc import Iterator, Mapping

import jinja2

from indexer.site.model import VIEWS, Memo, Site, View, build, uploader_slug
from indexer.site.publish import Published, Publisher
from indexer.site.render import Spec, environment, render, specs
from indexer.site.search import SearchBundle
from indexer.site.sources import Changes, SiteSources, StaleCopy
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
        None when it showed everything already. A refresh that fails leaves nothing
        trusted in memory: the next one starts from what the store holds."""
        with self._forgetting_on_failure():
            state = self.sources.prepare()
            if state != "warm":
                self._forget()
            if state == "loaded":  # the saved copy is what the site shows
                self._rendered = {view: self._specs(view) for view in VIEWS}
            changes: Changes | None = None
            if state != "rebuilt":
                try:
                    changes = self.sources.follow()
                except StaleCopy as exc:
                    logger.warning("the site's sources are read again: %s", exc)
                    self.sources.rebuild()
                    self._forget()
            if changes is not None and not changes:
                self.sources.save()  # the feed moved past nothing the site shows
                return None
            return self._publish_and_save(changes)

    def rebuild(self) -> dict[View, Published]:
        """Make the sources again from the whole store and render every page."""
        with self._forgetting_on_failure():
            self.sources.rebuild()
            self._forget()
            return self._publish_and_save(None)

    def _publish_and_save(self, changes: Changes | None) -> dict[View, Published]:
        result = self._publish_all(changes)
        self.sources.save()  # only now: the saved copy is what the pages show
        return result

    @contextlib.contextmanager
    def _forgetting_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.sources.forget()
            self._forget()
            raise

    def _forget(self) -> None:
        self._rendered = None
        for publisher in self._publishers.values():
            publisher.forget()

    def _publish_all(self, changes: Changes | None) -> dict[View, Published]:
        """Publish both views (`changes`: what changed, whose pages leaving a view are
        deleted whatever the manifests say; None: everything may have)."""
        rendered = self._rendered or {view: {} for view in VIEWS}
        result = {}
        for view in VIEWS:
            site = self.site(view)
            wanted = specs(site, download_base=self._download_base, search=self._search[view].files)
            result[view] = self._publish(view, wanted, rendered[view], self._leaving(site, changes))
            rendered[view] = wanted
        self._rendered = rendered
        return result

    def _specs(self, view: View) -> Mapping[str, Spec]:
        """The pages the saved copy shows, but the search bundle (built when a publish
        needs it: its files are compared with the manifests then)."""
        return specs(self.site(view), download_base=self._download_base, search=_no_bundle)

    def _leaving(self, site: Site, changes: Changes | None) -> set[str]:
        """The pages of changed files, batches and uploaders that are not in the view."""
        if changes is None:
            return set()
        files = {file.digest for file in site.files}
        batch_ids = {batch.id for batch in site.batches}
        authors = {uploader.author for uploader in site.uploaders}
        touched = set(changes.batch_ids)
        for digest in changes.digests:
            touched.update(self.sources.batches_of.get(digest, ()))
        leaving = {f"f/{digest}/index.html" for digest in changes.digests - files}
        leaving.update(f"b/{batch_id}/index.html" for batch_id in touched - batch_ids)
        for batch_id in touched:
            batch = self.sources.batches.get(batch_id)
            if batch is not None and batch.author not in authors:
                leaving.add(f"u/{uploader_slug(batch.author)}/index.html")
        return leaving

    def site(self, view: View) -> Site:
        sources, memo = self.sources, self._memos[view]
        memo.keep_only(sources.files.keys(), sources.batches.keys())
        return build(
            view, sources.files.values(), sources.batches.values(), sources.history, memo=memo
        )

    def _publish(
        self,
        view: View,
        wanted: Mapping[str, Spec],
        before: Mapping[str, Spec],
        leaving: set[str],
    ) -> Published:
        unchanged = {path for path, spec in wanted.items() if _same(before.get(path), spec)}
        published = self._publishers[view].publish(
            wanted,
            lambda path: render(self._env, wanted[path]),
            unchanged=unchanged,
            drop=leaving - wanted.keys(),
        )
        if published.written or published.deleted:
            logger.info(
                "site published",
                extra={"view": view, "written": published.written, "deleted": published.deleted},
            )
        return published


def _no_bundle(records: object) -> list[tuple[str, bytes]]:
    return []


def _same(before: Spec | None, spec: Spec) -> bool:
    return before is spec or before == spec


def render_site(store: Store, *, download_base: str = "$URL") -> dict[View, Published]:
    """Render both views from the whole store and publish them (``rebuild``)."""
    return SiteJob(store, download_base=download_base).rebuild()
