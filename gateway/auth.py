"""Who is calling, and what their Taskcluster scopes let them do.

Every request is anonymous, Hawk-signed (verified by the identity provider)
or carries ``Authorization: Bearer <jwt>`` (verified locally, no network).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.types import Scope
from taskcluster.utils import scopeMatch

from gateway.bodies import read_body
from gateway.errors import CHALLENGE, Forbidden, Unauthorized
from gateway.forwarded import TrustedProxies
from gateway.hawk import HawkError, HawkRequest, parse_header
from gateway.identity import (
    AuthError,
    Identity,
    IdentityProvider,
    InvalidCredentials,
    ProviderUnavailable,
)
from gateway.tokens import TokenService
from indexer.metrics import Family

MAX_SIGNED_BODY = 1024 * 1024  # bodies hashed for Hawk are JSON requests, not files
# Where a request's scope holds the id of its authenticated caller, for its log line.
CLIENT_ID = "tooltool.client_id"
_SCHEMES = frozenset({"bearer", "hawk", "basic"})


def client_id(scope: Scope) -> str | None:
    """The id of the request's authenticated caller (None: anonymous, or not yet known)."""
    value = scope.get(CLIENT_ID)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated client, or the anonymous caller (client_id None)."""

    client_id: str | None
    scopes: frozenset[str]

    @property
    def is_anonymous(self) -> bool:
        return self.client_id is None

    def has_scope(self, scope: str) -> bool:
        """Taskcluster's matching rules: equality, or a held scope ending in ``*``."""
        return scopeMatch(self.scopes, [[scope]])


@dataclass(frozen=True, slots=True)
class Permissions:
    """The tooltool scopes under a configurable prefix (the legacy table in DESIGN.md)."""

    prefix: str

    def download(self, visibility: str) -> str:
        return f"{self.prefix}/download/{visibility}"

    def upload(self, visibility: str) -> str:
        return f"{self.prefix}/upload/{visibility}"

    @property
    def manage(self) -> str:
        return f"{self.prefix}/manage"

    @property
    def all(self) -> tuple[str, ...]:
        """The five scopes of the legacy table."""
        return (
            self.download("public"),
            self.download("internal"),
            self.upload("public"),
            self.upload("internal"),
            self.manage,
        )

    def anonymous(self, *, allow_public_download: bool) -> Caller:
        """The caller without credentials: public downloads only, when allowed."""
        scopes = frozenset({self.download("public")}) if allow_public_download else frozenset()
        return Caller(None, scopes)

    def tooltool_scopes(self, held: Iterable[str]) -> frozenset[str]:
        """What of `held` falls under the prefix; a broader ``*`` scope becomes ``<prefix>/*``."""
        under = self.prefix + "/"
        scopes = set()
        for scope in held:
            if scope.startswith(under):
                scopes.add(scope)
            elif scope.endswith("*") and under.startswith(scope[:-1]):
                scopes.add(under + "*")
        return frozenset(scopes)

    def grantable(self, held: Iterable[str], requested: Iterable[str] | None) -> frozenset[str]:
        """The tooltool scopes a token may carry: the requested ones the caller holds,
        or all it holds when none are requested. Never wider than what is held."""
        own = self.tooltool_scopes(held)
        if requested is None:
            return own
        under = self.prefix + "/"
        return frozenset(
            scope for scope in requested if scope.startswith(under) and scopeMatch(own, [[scope]])
        )

    def require(self, caller: Caller, *scopes: str, detail: str | None = None) -> None:
        """Pass when the caller holds one of `scopes`; else 401 for an anonymous caller (who
        needs credentials), 403 with `detail` for an authenticated one."""
        if any(caller.has_scope(scope) for scope in scopes):
            return
        if caller.is_anonymous:
            raise Unauthorized("This request needs credentials", headers=CHALLENGE)
        raise Forbidden(detail)

    def may_download(self, caller: Caller, visibilities: Iterable[str]) -> bool:
        """The caller may see files of every one of these visibilities."""
        return all(caller.has_scope(self.download(visibility)) for visibility in visibilities)


class Authenticator(Protocol):
    """Decides who a request comes from."""

    async def authenticate(self, request: Request) -> Caller:
        """The request's caller; raises a 401 problem for invalid credentials."""
        ...


class RequestAuthenticator:
    """Anonymous, Hawk (through the identity provider) or Bearer (local JWT check)."""

    def __init__(
        self,
        *,
        provider: IdentityProvider,
        tokens: TokenService,
        permissions: Permissions,
        allow_anonymous_public_download: bool,
        proxies: TrustedProxies,
        verifications: Family | None = None,
    ) -> None:
        """`verifications` counts credentials verified, by scheme and outcome."""
        self._verifications = verifications
        self._provider = provider
        self._tokens = tokens
        self._anonymous = permissions.anonymous(
            allow_public_download=allow_anonymous_public_download
        )
        self._proxies = proxies

    async def authenticate(self, request: Request) -> Caller:
        authorization = request.headers.get("authorization")
        # Anonymous, or a token this process verified before: nothing to verify (or count).
        caller = self.known_caller(authorization)
        if caller is None:
            assert authorization is not None  # known_caller answers an anonymous caller
            caller = await self._verified_caller(request, authorization)
        request.scope[CLIENT_ID] = caller.client_id
        return caller

    async def _verified_caller(self, request: Request, authorization: str) -> Caller:
        scheme, credentials = _scheme(authorization)
        with self._verifying(scheme):
            if scheme == "bearer":
                verified = self._tokens.verify(credentials)
                return self._caller(verified.client_id, verified.scopes)
            if scheme == "hawk":
                identity = await self._provider.authenticate_hawk(
                    await self.hawk_request(request, authorization)
                )
                return self._caller(identity.client_id, identity.scopes)
            if scheme == "basic":
                raise InvalidCredentials("Basic credentials are accepted by POST /token only")
            raise InvalidCredentials("unsupported Authorization scheme")

    def known_caller(self, authorization: str | None) -> Caller | None:
        """The caller of a request with this Authorization header when that needs no work:
        anonymous, or a Bearer token verified before that has not expired since. None when
        :meth:`authenticate` must decide (and may refuse)."""
        if authorization is None:
            return self._anonymous
        scheme, credentials = _scheme(authorization)
        if scheme != "bearer":
            return None
        verified = self._tokens.cached(credentials)
        return None if verified is None else self._caller(verified.client_id, verified.scopes)

    async def identify(self, request: Request) -> Identity:
        """The Taskcluster identity behind a Hawk or Basic request (for POST /token)."""
        authorization = request.headers.get("authorization")
        if authorization is None:
            raise Unauthorized(
                "POST /token needs Taskcluster credentials (Hawk or Basic)",
                headers={"WWW-Authenticate": 'Basic realm="tooltool"'},
            )
        scheme, credentials = _scheme(authorization)
        with self._verifying(scheme):
            if scheme == "hawk":
                identity = await self._provider.authenticate_hawk(
                    await self.hawk_request(request, authorization)
                )
            elif scheme == "basic":
                client, access_token = _basic(credentials)
                identity = await self._provider.authenticate_basic(client, access_token)
            else:
                raise InvalidCredentials(
                    "POST /token needs Taskcluster credentials (Hawk or Basic)"
                )
        request.scope[CLIENT_ID] = identity.client_id
        return identity

    @contextlib.contextmanager
    def _verifying(self, scheme: str) -> Iterator[None]:
        """Count the verification of credentials of `scheme` by its outcome."""
        outcome = "ok"
        try:
            yield
        except AuthError:
            outcome = "invalid"
            raise
        except ProviderUnavailable:
            outcome = "unavailable"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            if self._verifications is not None:
                label = scheme if scheme in _SCHEMES else "other"
                self._verifications.inc((label, outcome))

    async def hawk_request(self, request: Request, authorization: str) -> HawkRequest:
        """The request as the client signed it: its host, port, path and (hashed) body."""
        try:
            header = parse_header(authorization)
        except HawkError as exc:
            raise InvalidCredentials(str(exc)) from None
        body = None
        if header.hash is not None:
            body = await read_body(request, MAX_SIGNED_BODY)
        elif _has_body(request):
            # Hawk leaves payload hashes optional; a body nobody signed is refused
            # here (the legacy client hashes every body it sends).
            raise InvalidCredentials("the Hawk header must hash the request's payload")
        target = self._proxies.target(request)
        return HawkRequest(
            method=request.method,
            resource=_resource(request),
            host=target.host,
            port=target.port,
            authorization=authorization,
            content_type=request.headers.get("content-type"),
            body=body,
        )

    def _caller(self, client_id: str, scopes: frozenset[str]) -> Caller:
        # A client may do at least what an anonymous caller may.
        return Caller(client_id, scopes | self._anonymous.scopes)


def _scheme(authorization: str) -> tuple[str, str]:
    """An Authorization header's scheme (lowercased) and its credentials (stripped)."""
    scheme, _, credentials = authorization.partition(" ")
    return scheme.lower(), credentials.strip()


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or (
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    )


def _resource(request: Request) -> str:
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, non-ASCII text and UnicodeDecodeError alike
        raise InvalidCredentials("malformed Basic credentials") from None
    client_id, separator, access_token = decoded.partition(":")
    if not separator or not client_id or not access_token:
        raise InvalidCredentials("malformed Basic credentials")
    return client_id, access_token
