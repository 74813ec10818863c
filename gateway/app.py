"""The gateway application factory."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import Authenticator, Permissions, RequestAuthenticator
from gateway.blobs import Blobs
from gateway.catalog_view import CatalogView
from gateway.cloudfront import CloudFrontSigner
from gateway.credentials import Credentials, build_credentials
from gateway.dockerflow import Dockerflow
from gateway.download import Downloads
from gateway.download_urls import DownloadUrls
from gateway.embedded import EmbeddedIndexer
from gateway.errors import EXCEPTION_HANDLERS
from gateway.fast_path import FastDownloads
from gateway.files import Files
from gateway.forwarded import TrustedProxies
from gateway.index_cache import IndexCache
from gateway.indexer_health import IndexerHealth
from gateway.logs import RequestIdMiddleware, RequestLog
from gateway.lookup import FileLookup
from gateway.manage import Management
from gateway.metrics import GatewayMetrics, MetricsRoute, counts_of
from gateway.openapi import ApiDescription
from gateway.resolve import ManifestResolver
from gateway.settings import Settings
from gateway.site import Site
from gateway.token_routes import TokenRoutes
from gateway.uploads import Quota, Uploads
from gateway.urls import PublicUrls
from gateway.worker_metrics import SharedMetrics
from indexer.catalog import Catalog
from indexer.instrumented_store import instrumented, unwrapped
from indexer.job import Indexer
from indexer.lease import Lease
from indexer.local_store import LocalStore
from indexer.pass_metrics import PassMetrics
from indexer.stores import Regions

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    regions: Regions,
    *,
    credentials: Credentials | None = None,
    authenticator: Authenticator | None = None,
    indexer_regions: Regions | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    metrics: GatewayMetrics | None = None,
) -> ASGIApp:
    """The gateway over `regions`, configured by `settings`.

    `credentials` defaults to what the settings configure; `authenticator`
    replaces request authentication on the download routes, ``GET /sha512/<digest>`` and
    ``POST /resolve`` (a seam for tests);
    `indexer_regions` are the same stores opened for the embedded indexer's
    bulk work (longer timeouts), `regions` when not given; `metrics` are where the
    app counts (new ones when not given).
    """
    if credentials is None:
        credentials = build_credentials(settings)
    if metrics is None:
        metrics = GatewayMetrics()
    # Every store call counted, the embedded indexer's too, at this one seam.
    indexer_regions = instrumented(indexer_regions or regions, metrics.metrics)
    regions = instrumented(regions, metrics.metrics)
    permissions = Permissions(settings.scope_prefix)
    proxies = TrustedProxies.parse(settings.auth.trusted_proxies)
    request_authenticator = RequestAuthenticator(
        provider=credentials.provider,
        tokens=credentials.tokens,
        permissions=permissions,
        allow_anonymous_public_download=settings.allow_anonymous_public_download,
        proxies=proxies,
        verifications=metrics.token_verifications,
    )
    index = IndexCache(
        regions.index,
        ttl=settings.index_cache_seconds,
        negative_ttl=settings.index_negative_cache_seconds,
        max_entries=settings.index_cache_entries,
        clock=monotonic,
    )
    urls = PublicUrls(proxies)
    download_urls = DownloadUrls(
        expires_in=settings.download_expires_in,
        reuse_seconds=settings.signed_url_reuse_seconds,
        # A CDN in front of the first region's bucket: its signed URLs replace that
        # bucket's own (a file served from another region gets that region's URL).
        cdn=(
            CloudFrontSigner.from_settings(settings.cloudfront).url
            if settings.cloudfront is not None
            else None
        ),
        cdn_region=regions.index.region,
    )
    download_authenticator = authenticator or request_authenticator
    downloads = Downloads(
        regions=regions,
        lookup=FileLookup(
            index=index, authenticator=download_authenticator, permissions=permissions
        ),
        urls=urls,
        download_urls=download_urls,
    )
    resolver = ManifestResolver(downloads=downloads, authenticator=download_authenticator)
    tokens = TokenRoutes(
        authenticator=request_authenticator, tokens=credentials.tokens, permissions=permissions
    )
    indexer = Indexer(
        indexer_regions,
        render_site=settings.stores.renders_site,
        on_index_written=index.invalidate,
        late_put=settings.stores.late_put_seconds,
    )
    embedded = (
        EmbeddedIndexer(
            indexer,
            interval=settings.indexer_interval,
            lease=lambda: Lease(indexer.regions.index, seconds=settings.stores.lease_seconds),
            passes=PassMetrics(metrics.metrics),
        )
        if settings.runs_embedded_indexer
        else None
    )
    catalog = CatalogView(Catalog(regions.index), ttl=settings.index_cache_seconds, clock=monotonic)
    uploads = Uploads(
        regions=regions,
        authenticator=request_authenticator,
        permissions=permissions,
        urls=urls,
        catalog=catalog,
        index=index,
        expires_in=settings.upload_expires_in,
        quota=Quota(settings.max_pending_files, settings.max_pending_bytes),
        on_complete=embedded.wake if embedded is not None else lambda: None,
    )
    files = Files(
        lookup=FileLookup(
            index=index, authenticator=request_authenticator, permissions=permissions
        ),
        catalog=catalog,
        authenticator=request_authenticator,
        permissions=permissions,
    )
    management = Management(
        regions=regions,
        authenticator=request_authenticator,
        permissions=permissions,
        index=index,
        catalog=catalog,
    )
    blobs = Blobs(
        {store.region: store for store in map(unwrapped, regions) if isinstance(store, LocalStore)}
    )
    site = Site(store=regions.index, authenticator=request_authenticator, permissions=permissions)
    dockerflow = Dockerflow(
        regions=regions,
        version_file=settings.version_file,
        heartbeat_timeout=settings.heartbeat_timeout,
        recheck_seconds=settings.heartbeat_recheck_seconds,
        indexer=(
            IndexerHealth(
                regions,
                max_pass_age=settings.heartbeat_indexer_seconds,
                max_upload_wait=settings.heartbeat_upload_seconds,
            )
            if settings.checks_indexer
            else None
        ),
    )
    app = Starlette(
        routes=[
            *downloads.routes(),
            *resolver.routes(),
            *uploads.routes(),
            *files.routes(),
            *management.routes(),
            *tokens.routes(),
            *blobs.routes(),
            *dockerflow.routes(),
            *ApiDescription(
                local_store=bool(blobs.routes()), root_path=settings.root_path
            ).routes(),
            *site.routes(),
            *MetricsRoute(
                metrics.metrics, networks=TrustedProxies.parse(settings.metrics_networks)
            ).routes(),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=_lifespan(
            embedded,
            None
            if settings.metrics_dir is None
            else SharedMetrics(settings.metrics_dir, metrics.metrics),
            separate_indexer=settings.checks_indexer,
        ),
    )
    # A redirect to add a slash would be an answer outside the problem-JSON shape.
    app.router.redirect_slashes = False
    log = RequestLog()
    # Outside Starlette's error middleware, so 500 answers carry the request id too.
    wrapped: ASGIApp = RequestIdMiddleware(app, log, metrics)
    fast: FastDownloads | None = None
    if authenticator is None:  # a test's authenticator sees every download
        wrapped = fast = FastDownloads(
            wrapped,
            index=index,
            regions=regions,
            download_urls=download_urls,
            urls=urls,
            authenticator=request_authenticator,
            permissions=permissions,
            log=log,
            metrics=metrics,
        )
    metrics.add_counts(
        metrics.index_cache,
        lambda: counts_of(
            hit=index.hits + (fast.answered if fast is not None else 0), miss=index.misses
        ),
    )
    metrics.add_counts(
        metrics.signed_urls,
        lambda: counts_of(reused=download_urls.reused, signed=download_urls.signed),
    )
    if settings.root_path:
        return RootPathMiddleware(wrapped, settings.root_path)
    return wrapped


def _lifespan(
    embedded: EmbeddedIndexer | None,
    shared: SharedMetrics | None,
    *,
    separate_indexer: bool,
) -> Callable[[Starlette], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if embedded is not None:
            embedded.start()
            logger.info("indexer loop running in process")
        elif separate_indexer:
            # Without one, uploads are accepted and never downloadable: say where to look.
            logger.info(
                "uploads are verified by a separate tooltool-indexer (watch, or run from"
                " cron); /__heartbeat__ checks that one is alive"
            )
        try:
            async with shared.publishing() if shared is not None else contextlib.nullcontext():
                yield
        finally:
            if embedded is not None:
                embedded.stop()

    return lifespan


class RootPathMiddleware:
    """Serves the app under a path prefix such as ``/tooltool``.

    Works whether the proxy in front strips the prefix or passes it on:
    either way the app routes on the rest and builds URLs with the prefix.
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            scope = {**scope, "root_path": self.root_path}
            if not (path == self.root_path or path.startswith(self.root_path + "/")):
                # The proxy stripped the prefix; put it back where clients signed it.
                scope["path"] = self.root_path + path
                if "raw_path" in scope and scope["raw_path"] is not None:
                    scope["raw_path"] = self.root_path.encode() + scope["raw_path"]
        await self.app(scope, receive, send)
