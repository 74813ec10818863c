"""``POST /token``, ``GET /__permissions__`` and ``GET /.well-known/jwks.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth import Permissions, RequestAuthenticator
from gateway.bodies import is_text, parse_json, read_body
from gateway.errors import BadRequest
from gateway.tokens import TokenService

MAX_BODY = 64 * 1024
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 500


class TokenRoutes:
    """Exchanges Taskcluster credentials for JWTs, and says what a caller may do."""

    def __init__(
        self,
        *,
        authenticator: RequestAuthenticator,
        tokens: TokenService,
        permissions: Permissions,
    ) -> None:
        self._authenticator = authenticator
        self._tokens = tokens
        self._permissions = permissions

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/token", self.token, methods=["POST"]),
            Route("/__permissions__", self.permissions, methods=["GET"]),
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
        ]

    async def token(self, request: Request) -> Response:
        identity = await self._authenticator.identify(request)
        requested, expires_in = _token_request(await read_body(request, MAX_BODY))
        scopes = self._permissions.grantable(identity.scopes, requested)
        issued = self._tokens.issue(identity, scopes, expires_in=expires_in)
        return JSONResponse(issued.to_json(), headers={"Cache-Control": "no-store"})

    async def permissions(self, request: Request) -> Response:
        caller = await self._authenticator.authenticate(request)
        return JSONResponse(
            {
                "clientId": caller.client_id,
                "scopes": sorted(self._permissions.tooltool_scopes(caller.scopes)),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self._tokens.jwks())


def _token_request(body: bytes) -> tuple[list[str] | None, int | None]:
    """The optional ``{"scopes": [...], "expires_in": seconds}`` body."""
    if not body.strip():
        return None, None
    data: Any = parse_json(body, "The body")
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object")
    unknown = sorted(set(data) - {"scopes", "expires_in"})
    if unknown:
        raise BadRequest(f"Unknown field: {unknown[0][:50]}")
    scopes = data.get("scopes")
    if scopes is not None and (
        not isinstance(scopes, list)
        or len(scopes) > MAX_SCOPES
        or not all(
            isinstance(scope, str) and len(scope) <= MAX_SCOPE_LENGTH and is_text(scope)
            for scope in scopes
        )
    ):
        raise BadRequest(
            f"scopes must be a list of at most {MAX_SCOPES} strings of at most"
            f" {MAX_SCOPE_LENGTH} characters, without control characters"
        )
    expires_in = data.get("expires_in")
    if expires_in is not None and (
        not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0
    ):
        raise BadRequest("expires_in must be a positive number of seconds")
    return scopes, expires_in
