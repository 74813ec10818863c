"""The gateway's metrics, and ``GET /__metrics__`` that serves them.

Requests are counted by method, route template and status, with their latency,
in one histogram slot per label set that the request-id middleware and the fast
path update in place (both run on the event loop's thread). Caches, token
verifications and store calls keep their own numbers; :class:`GatewayMetrics`
reads them when scraped. No label holds a caller's text: an unknown method is
``other``, a path no route matches is ``(unmatched)``.

``/__metrics__`` answers only callers from ``TOOLTOOL_METRICS_NETWORKS``
(loopback by default): it shares the port of public traffic, and what it
shows (request rates, store errors) is the operators'. Every other caller gets
403 in problem JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.errors import Forbidden
from gateway.forwarded import TrustedProxies
from indexer.metrics import Family, Metrics, observe_into

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics:
    """Every metric of one gateway process."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = Metrics() if metrics is None else metrics
        self.requests: Family = self.metrics.histogram(
            "tooltool_http_request_duration_seconds",
            "Requests answered, and how long they took, by method, route template and status",
            ("method", "route", "status"),
        )
        self._requests_total = self.metrics.counter(
            "tooltool_http_requests",
            "Requests answered by method, route template and status",
            ("method", "route", "status"),
        )
        self.index_cache = self.metrics.counter(
            "tooltool_index_cache_requests",
            "Index object lookups answered from the cache (hit) or the store (miss)",
            ("result",),
        )
        self.signed_urls = self.metrics.counter(
            "tooltool_signed_urls",
            "Download redirects to a signed URL reused within its window, or newly signed",
            ("result",),
        )
        self.token_verifications = self.metrics.counter(
            "tooltool_token_verifications",
            "Credentials verified (Bearer tokens, Hawk, Basic), by scheme and outcome",
            ("scheme", "outcome"),
        )
        self.refused = self.metrics.counter(
            "tooltool_http_refused",
            "Requests the HTTP server refused before the app, by status (400 malformed HTTP,"
            " 408 a head too slow, 431 a head too large)",
            ("status",),
        )
        self._slots: dict[tuple[str, str, str], list[float]] = {}
        self.metrics.add_source(self._count_requests)

    def slot(self, method: str, route: str, status: int) -> list[float]:
        """The latency slot of requests with these labels (see :func:`observe_into`)."""
        key = (method if method in _METHODS else "other", route, str(status))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.requests.slot(key)
        return slot

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request the app answered (the fast path updates its slots itself)."""
        observe_into(self.slot(method, route, status), self.requests.buckets, seconds)

    def add_counts(self, family: Family, counts: Callable[[], dict[tuple[str, ...], int]]) -> None:
        """Set `family`'s values from `counts` (numbers kept elsewhere) at each collection."""
        self.metrics.add_source(lambda: family.values.update(counts()))

    def _count_requests(self) -> None:
        self._requests_total.values.update(
            (labels, sum(slot[:-1])) for labels, slot in list(self.requests.values.items())
        )


class MetricsRoute:
    """``GET /__metrics__``: the Prometheus text format, to the configured networks only."""

    def __init__(self, metrics: Metrics, *, networks: TrustedProxies) -> None:
        self._metrics = metrics
        self._networks = networks

    def routes(self) -> Sequence[BaseRoute]:
        return [Route("/__metrics__", self.serve, methods=["GET"])]

    async def serve(self, request: Request) -> Response:
        client = request.client.host if request.client is not None else None
        if not self._networks.is_trusted(client):
            raise Forbidden("Metrics are served to the networks of TOOLTOOL_METRICS_NETWORKS only")
        return Response(
            self._metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )


def counts_of(**numbers: Any) -> dict[tuple[str, ...], int]:
    """Counter values by a single label value: ``counts_of(hit=3, miss=1)``."""
    return {(name,): int(value) for name, value in numbers.items()}
