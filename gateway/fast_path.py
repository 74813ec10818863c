"""The cached download, answered below Starlette.

Fleets of CI workers ask ``GET /sha512/<digest>`` for the same few hundred
files all day, so what a cached answer costs decides how many replicas a fleet
needs. :class:`FastDownloads` sits in front of the app and answers a request
itself only when everything it needs is at hand, with the same checks as
:mod:`gateway.download`, in the same order, and the same bytes:

- ``GET`` or ``HEAD`` of ``/sha512/`` and a well-formed digest;
- anonymous, or a Bearer token this process has verified and that has not
  expired (:meth:`gateway.tokens.TokenService.cached`);
- a fresh index object in the cache (:meth:`gateway.index_cache.IndexCache.peek`),
  of a visibility the caller may download;
- a configured region holding a copy (``?region=`` honoured).

Everything else (a malformed digest, Hawk, a token to verify, a miss, a
refusal, any error) goes on to the app, which answers as it always has.
"""

from __future__ import annotations

import time
from bisect import bisect_left

from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import Caller, Permissions, RequestAuthenticator
from gateway.download_urls import DownloadUrls, Redirect
from gateway.forwarded import first_values
from gateway.index_cache import IndexCache, Missing
from gateway.logs import RequestLog
from gateway.metrics import GatewayMetrics
from gateway.urls import PublicUrls
from indexer.digests import is_valid_digest
from indexer.schema import blob_key
from indexer.stores import Regions

_PREFIX = "/sha512/"
ROUTE = "/sha512/{digest}"  # the download route's template, as the app's lines name it
_ROUTE_LENGTH = len(_PREFIX) + 128
_METHODS = frozenset({"GET", "HEAD"})
_MAX_DECISIONS = 10_000
_READ_HEADERS = frozenset({b"authorization", b"x-request-id"})
# A plain tuple (a NamedTuple costs a request 0.3 µs more): the redirect, the caller's
# X-Request-Id, the digest, the caller's id.
_Answer = tuple[Redirect, str | None, str, str | None]


class FastDownloads:
    """Answers cached downloads; passes every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        index: IndexCache,
        regions: Regions,
        download_urls: DownloadUrls,
        urls: PublicUrls,
        authenticator: RequestAuthenticator,
        permissions: Permissions,
        log: RequestLog,
        metrics: GatewayMetrics,
    ) -> None:
        self.app = app
        self._index = index
        self._regions = regions
        self._download_urls = download_urls
        self._urls = urls
        self._authenticator = authenticator
        self._permissions = permissions
        self._log = log
        # The latency slots of the answers given here, by method, updated in place; and
        # how many there were (each one an index cache hit).
        self._slots = {method: metrics.slot(method, ROUTE, 302) for method in _METHODS}
        self._buckets = metrics.requests.buckets
        self.answered = 0
        # Whether a caller's scopes allow downloading a visibility.
        self._decisions: dict[tuple[frozenset[str], str], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _METHODS:
            started = time.perf_counter()
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            route = path[len(root) :] if root and path.startswith(root) else path
            if len(route) == _ROUTE_LENGTH and route.startswith(_PREFIX):
                answer = self._answer(scope, route[len(_PREFIX) :])
                if answer is not None:
                    await self._send(scope, send, answer, started)
                    return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, digest: str) -> _Answer | None:
        """The redirect, the caller's X-Request-Id, the digest and the caller's id, or None
        to leave the request to the app."""
        if not is_valid_digest(digest):
            return None
        headers = first_values(scope, _READ_HEADERS)
        caller = self._authenticator.known_caller(headers.get(b"authorization"))
        if caller is None:
            return None
        found = self._index.peek(digest)
        if found is None or isinstance(found, Missing):
            return None
        if not self._allows(caller, found.visibility):
            return None
        query = scope.get("query_string", b"")
        region = QueryParams(query).get("region") if query else None
        store = self._regions.choose(found.instances, region)
        if store is None:
            return None
        try:
            redirect = self._download_urls.redirect(
                store, blob_key(digest), lambda: self._urls.base(scope)
            )
        except Exception:  # the app answers it, as problem JSON
            return None
        return redirect, headers.get(b"x-request-id"), digest, caller.client_id

    def _allows(self, caller: Caller, visibility: str) -> bool:
        """`caller.has_scope` for the visibility's download scope, remembered by scopes."""
        key = (caller.scopes, visibility)
        allowed = self._decisions.get(key)
        if allowed is None:
            allowed = caller.has_scope(self._permissions.download(visibility))
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = allowed
        return allowed

    async def _send(self, scope: Scope, send: Send, answer: _Answer, started: float) -> None:
        redirect, request_id_header, digest, client_id = answer
        request_id = self._log.request_id(request_id_header)
        headers = [*redirect.raw_headers, (b"x-request-id", request_id.encode("ascii"))]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        method = scope["method"]
        # The route's part is a digest; only a root path could hold text to redact.
        seconds = self._log.summary(
            method, scope["path"], 302, started, request_id, not scope.get("root_path"), ROUTE,
            digest, client_id,
        )  # fmt: skip
        # indexer.metrics.observe_into, inlined: a function call costs this path 0.1 µs.
        slot = self._slots[method]
        slot[bisect_left(self._buckets, seconds)] += 1
        slot[-1] += seconds
        self.answered += 1
        await send({"type": "http.response.body", "body": redirect.body})
