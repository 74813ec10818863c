"""Problem-JSON errors: the one shape every gateway error is rendered in.

The shape is the legacy service's (see the seed's curl checks), plus an
``error`` member with ``name`` and ``description``, which the legacy
``tooltool.py`` client logs. ``Content-Type`` is exactly
``application/json``: the legacy client parses error bodies only then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from gateway.identity import AuthError, ProviderUnavailable
from indexer.schema import MalformedIndexObject
from indexer.stores import StoreFull, StoreUnavailable

logger = logging.getLogger(__name__)

# Werkzeug's descriptions, which the legacy service answered with.
DEFAULT_DETAILS: Mapping[int, str] = {
    400: "The browser (or proxy) sent a request that this server could not understand.",
    401: (
        "The server could not verify that you are authorized to access the URL requested. You"
        " either supplied the wrong credentials (e.g. a bad password), or your browser doesn't"
        " understand how to supply the credentials required."
    ),
    403: (
        "You don't have the permission to access the requested resource. It is either"
        " read-protected or not readable by the server."
    ),
    404: (
        "The requested URL was not found on the server. If you entered the URL manually please"
        " check your spelling and try again."
    ),
    405: "The method is not allowed for the requested URL.",
    413: "The data value transmitted exceeds the capacity limit.",
    414: "The length of the requested URL exceeds the capacity limit for this server.",
    416: "The server cannot provide the requested range.",
    429: "Too many requests.",
    431: "The request's header fields are too large.",
    500: (
        "The server encountered an internal error and was unable to complete your request."
        " Either the server is overloaded or there is an error in the application."
    ),
    503: (
        "The server is temporarily unable to service your request due to maintenance downtime"
        " or capacity problems. Please try again later."
    ),
}


# What a 401 offers; Basic is offered by POST /token only.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tooltool", Hawk'}


class Problem(Exception):
    """An error answered to the caller as problem JSON with `status`."""

    status = 500

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or DEFAULT_DETAILS.get(self.status, HTTPStatus(self.status).phrase)
        super().__init__(self.detail)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The problem-JSON body this error is answered with."""
        return {**problem_body(self.status, self.detail), **self.extra}


class BadRequest(Problem):
    """400: the request is malformed."""

    status = 400


class Unauthorized(Problem):
    """401: credentials are required and missing or invalid."""

    status = 401


class Forbidden(Problem):
    """403: the caller may not do this."""

    status = 403


class NotFound(Problem):
    """404: nothing is known at this address."""

    status = 404


class PayloadTooLarge(Problem):
    """413: the request body is over the limit."""

    status = 413


class TooManyRequests(Problem):
    """429: the caller has too much work pending (a quota)."""

    status = 429


def problem_body(status: int, detail: str | None = None) -> dict[str, Any]:
    """The problem-JSON body for `status` and `detail` (the legacy description by default)."""
    detail = detail or DEFAULT_DETAILS.get(status) or HTTPStatus(status).phrase
    title = f"{status} {HTTPStatus(status).phrase}: {detail}"
    return {
        "detail": detail,
        "instance": "about:blank",
        "status": status,
        "title": title,
        "type": "about:blank",
        "error": {"name": title, "description": detail},
    }


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The problem-JSON response for `status` and `detail`."""
    body = problem_body(status, detail)
    body.update(extra or {})
    response = JSONResponse(body, status_code=status, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.detail, headers=exc.headers, extra=exc.extra)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette raises these for unknown routes (404) and methods (405); its
    # detail is the bare phrase, so the legacy descriptions are used instead.
    assert isinstance(exc, HTTPException)
    headers = None
    if exc.status_code == 405:
        headers = {"Allow": ", ".join(_allowed_methods(request))}
    return problem_response(exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (RFC 9110: `Allow` lists them
    all); Starlette's own 405 names only the first route's, and several routes share paths
    (``GET`` and ``POST /upload``, ``GET`` and ``PATCH /file/sha512/<d>``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and isinstance(route, Route):
            methods |= route.methods or set()
    return sorted(methods)


async def _auth_error(request: Request, exc: Exception) -> Response:
    # Says what is wrong with the credentials, never echoes them.
    return problem_response(
        401,
        f"Invalid credentials: {exc}",
        headers=CHALLENGE,
    )


async def _provider_unavailable(request: Request, exc: Exception) -> Response:
    return problem_response(
        503, "The identity provider is unavailable; try again later", headers={"Retry-After": "5"}
    )


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    logger.error("store unavailable: %s", exc, extra={"path": request.url.path})
    return problem_response(503, headers={"Retry-After": "5"})


async def _store_full(request: Request, exc: Exception) -> Response:
    logger.error("store full: %s", exc, extra={"path": request.url.path})
    return problem_response(
        507,
        "The store has no room for this request now; nothing was kept. Try again later.",
        headers={"Retry-After": "60"},
    )


def refuse_malformed(exc: MalformedIndexObject) -> dict[str, Any]:
    """Log a malformed index object (its key, never its content); the problem body of the
    500 a request for its file is answered with."""
    logger.error("refusing a malformed index object: %s", exc)
    return problem_body(500)


async def _malformed_index(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MalformedIndexObject)
    refuse_malformed(exc)
    return problem_response(500)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (with the request id), never to the caller.
    logger.exception("unexpected error answering %s %s", request.method, request.url.path)
    return problem_response(500)


EXCEPTION_HANDLERS = {
    Problem: _problem,
    HTTPException: _http_exception,
    StoreUnavailable: _store_unavailable,
    StoreFull: _store_full,
    AuthError: _auth_error,
    ProviderUnavailable: _provider_unavailable,
    MalformedIndexObject: _malformed_index,
    Exception: _unexpected,
}
