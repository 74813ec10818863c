"""Request ids on every record and response, and one summary line per request.

The formatters (mozlog JSON or text, always redacted) are :mod:`indexer.logs`'s.
The summary line is the one line every request costs, so :class:`RequestLog`
builds it directly when logging is set up as production sets it up (one mozlog
handler): the same fields, with no LogRecord, formatter or regex scan. Any
other set-up (text lines, more handlers, a test's capture) gets it through
:mod:`logging`, as every other record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from dockerflow.logging import request_id_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import client_id
from gateway.errors import problem_response
from gateway.forwarded import first_values
from gateway.metrics import GatewayMetrics
from indexer.digests import is_valid_digest
from indexer.logs import MozlogHandler, configure_logging, redacted_json_text, shortened
from indexer.redaction import redact

__all__ = ["RequestIdMiddleware", "RequestLog", "configure_logging"]

_REQUEST_ID_HEADER = frozenset({b"x-request-id"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
SUMMARY = "request.summary"
UNMATCHED = "(unmatched)"  # the route of a request no route matched
# Where a request's scope holds the counts its route reports for its log line.
COUNTS = "tooltool.counts"
_MAX_CLIENTS = 10_000
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")  # {digest:anything} is {digest}
_DECISIONS = {
    302: "redirect",
    304: "not-modified",
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    429: "throttled",
}
summary_logger = logging.getLogger(SUMMARY)
logger = logging.getLogger(__name__)


class RequestLog:
    """Request ids, and the summary line of each request.

    A generated id is 32 hex characters: a random prefix per log (so per
    process) and a counter, unique without a call to the system's random
    source per request. An id the caller sent in ``X-Request-Id`` is kept
    when well formed (and redacted like any logged text).

    Direct lines are flushed once per turn of the event loop: the requests
    answered in one turn cost one write to the log stream, not one each.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()
        self._flushing: MozlogHandler | None = None  # a flush is scheduled for it
        self._clients: dict[str, str] = {}  # the client member of lines, by client id

    def request_id(self, header: str | None) -> str:
        """The caller's id (its X-Request-Id header) when well formed, else a new one."""
        if header is not None and _REQUEST_ID.fullmatch(header):
            return redact(header)
        return f"{self._prefix}{next(self._counter):016x}"

    def summary(
        self,
        method: str,
        path: str,
        code: int,
        started: float,
        rid: str,
        is_clean: bool = False,
        route: str = UNMATCHED,
        digest: str | None = None,
        client: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> float:
        """Write the summary of a request that began at `started` (``time.perf_counter``);
        the seconds it took.

        `rid` comes from :meth:`request_id`; `is_clean` says `path` holds nothing to
        redact (a route's own path of hex digits), else it is redacted as the formatter
        would redact it. `route` is the template of the route that answered, `digest` the
        valid digest its path names (if any), `client` the authenticated caller's id
        (None: anonymous, or not authenticated), `counts` what the route counted (see
        :func:`record_counts`); the decision is the status's. (Not keyword-only: the fast
        path passes them by position, which costs it less.)
        """
        seconds = time.perf_counter() - started
        elapsed = round(seconds * 1000, 2)
        handler = _direct_handler()
        if handler is None:
            fields: dict[str, Any] = {
                "method": method,
                "path": path,  # redacted, then shortened, by the formatter
                "code": code,
                "t": elapsed,
                "rid": rid,
                "route": route,
            }
            if digest is not None:
                fields["digest"] = digest
            if client is not None:
                fields["client"] = client
            if counts:
                fields.update(counts)
            fields["decision"] = decision(code)
            token = request_id_context.set(rid)
            try:
                summary_logger.info("", extra=fields)
            finally:
                request_id_context.reset(token)
            return seconds
        path_json = f'"{path}"' if is_clean else redacted_json_text(shortened(path))
        digest_json = "" if digest is None else f', "digest": "{digest}"'
        client_json = "" if client is None else self._client_member(client)
        # Names are the code's own; values integers.
        counts_json = (
            "" if counts is None else "".join(f', "{name}": {int(n)}' for name, n in counts.items())
        )
        # The formatter's JSON for these fields, key for key; `rid` is redacted and holds
        # no character JSON escapes; `method` is an HTTP token; `route`, a digest and the
        # decision are the code's own text.
        handler.write_line(
            f'{{"Timestamp": {time.time_ns()}, "Type": "{SUMMARY}", {handler.identity},'
            f' "Severity": 6, "Pid": {handler.pid}, "Fields": {{"method": "{method}",'
            f' "path": {path_json}, "code": {code}, "t": {elapsed!r}, "rid": "{rid}",'
            f' "route": "{route}"{digest_json}{client_json}{counts_json},'
            f' "decision": "{_DECISIONS[code] if code in _DECISIONS else decision(code)}"}}}}',
            flush=False,
        )
        self._flush_soon(handler)
        return seconds

    def _client_member(self, client: str) -> str:
        """The line's ``client`` member: escaped and redacted once per client id (it costs
        a Bearer download's line microseconds), remembered for a bounded number of ids."""
        member = self._clients.get(client)
        if member is None:
            member = f', "client": {redacted_json_text(shortened(client))}'
            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.clear()
            self._clients[client] = member
        return member

    def _flush_soon(self, handler: MozlogHandler) -> None:
        if self._flushing is handler:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in the server's loop: at once
            handler.flush_lines()
            return
        self._flushing = handler
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        handler, self._flushing = self._flushing, None
        if handler is not None:
            handler.flush_lines()


def record_counts(scope: Scope, **counts: int) -> None:
    """Counts for the request's summary line (entries of a batch resolved and refused, say):
    numbers only, under names of the code's own, never a caller's text."""
    scope[COUNTS] = counts


def route_label(scope: Scope, labels: dict[int, str]) -> str:
    """The template of the route that answered (``/sha512/{digest}``), or ``(unmatched)``;
    `labels` remembers them by route."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    label = labels.get(id(route))
    if label is None:
        path = getattr(route, "path", None)
        label = _CONVERTOR.sub(r"{\1}", path) if isinstance(path, str) else UNMATCHED
        labels[id(route)] = label
    return label


def decision(code: int) -> str:
    """What the gateway decided, as the summary line names it."""
    named = _DECISIONS.get(code)
    if named is not None:
        return named
    if code >= 500:
        return "error"
    if code >= 400:
        return "refused"
    return "ok"


def _direct_handler() -> MozlogHandler | None:
    """The mozlog handler to write summaries to directly, when it alone would receive them."""
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not MozlogHandler
        or summary_logger.handlers
        or summary_logger.filters
        or not summary_logger.propagate
        or root.filters
        or not summary_logger.isEnabledFor(logging.INFO)
        or handler.level > logging.INFO
    ):
        return None
    return handler


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-Id when well formed), logs a summary.

    Wraps the whole Starlette app, outside its error middleware, so that 500
    answers carry the id too and their log lines are written while it is set.
    """

    def __init__(
        self,
        app: ASGIApp,
        log: RequestLog | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.app = app
        self.log = RequestLog() if log is None else log
        self.metrics = metrics
        self._routes: dict[int, str] = {}  # route labels, by route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.log.request_id(
            first_values(scope, _REQUEST_ID_HEADER).get(b"x-request-id")
        )
        token = request_id_context.set(request_id)
        started = time.perf_counter()
        status = 500
        is_started = is_logged = False

        def log_summary() -> None:
            nonlocal is_logged
            is_logged = True
            route = route_label(scope, self._routes)
            params = scope.get("path_params")
            digest = params.get("digest") if params else None
            seconds = self.log.summary(
                scope["method"],
                scope.get("path", ""),
                status,
                started,
                request_id,
                route=route,
                digest=digest if isinstance(digest, str) and is_valid_digest(digest) else None,
                client=client_id(scope),
                counts=scope.get(COUNTS),
            )
            if self.metrics is not None:
                self.metrics.observe(scope["method"], route, status, seconds)

        async def send_with_id(message: Message) -> None:
            nonlocal status, is_started
            if message["type"] == "http.response.start":
                status = message["status"]
                is_started = True
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last part goes out, so the line is written when the caller has it.
                log_summary()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's error middleware answers (through the handler that logs the
            # error) and then re-raises for the server to log again, traceback and all.
            if not is_started:
                logger.exception("unexpected error before any answer")
                await problem_response(500)(scope, receive, send_with_id)
        finally:
            if not is_logged:
                log_summary()
            request_id_context.reset(token)
