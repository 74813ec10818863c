"""Identity providers: who Taskcluster credentials belong to, and what scopes they hold.

Two providers, chosen by configuration: :class:`TaskclusterProvider` asks a
Taskcluster deployment (``auth.authenticateHawk``), so permanent and temporary
credentials and authorizedScopes work as Taskcluster defines them;
:class:`ClientsFile` (the embedded default) verifies Hawk locally against a
JSON list of permanent clients.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import mohawk
import taskcluster.aio
import taskcluster.exceptions
from taskcluster.utils import scopeMatch

from gateway.hawk import HawkError, HawkRequest, HawkVerifier, check_payload, parse_header
from indexer.config import SettingsError

logger = logging.getLogger(__name__)


MAX_EXT = 2048


class AuthError(Exception):
    """Base class for credentials that do not authenticate (answered 401)."""


class InvalidCredentials(AuthError):
    """The credentials are unknown, malformed or do not match the request."""


class ProviderUnavailable(Exception):
    """The identity provider could not be asked (answered 503)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified client: its id, every scope it holds, and when its credentials expire."""

    client_id: str
    scopes: frozenset[str]
    expires: float | None = None


class IdentityProvider(Protocol):
    """Verifies Taskcluster credentials."""

    async def authenticate_hawk(self, request: HawkRequest) -> Identity:
        """The identity behind a Hawk-signed request."""
        ...

    async def authenticate_basic(self, client_id: str, access_token: str) -> Identity:
        """The identity behind a clientId and accessToken (HTTP Basic)."""
        ...


@dataclass(frozen=True, slots=True)
class Client:
    """One entry of the clients file."""

    client_id: str
    access_token: str
    scopes: frozenset[str]


class ClientsFile:
    """Permanent clients listed in a JSON file, verified locally."""

    def __init__(self, clients: Iterable[Client], *, verifier: HawkVerifier) -> None:
        self._clients = {client.client_id: client for client in clients}
        self._verifier = verifier

    @classmethod
    def load(cls, path: Path, *, verifier: HawkVerifier) -> ClientsFile:
        """Read ``[{"clientId", "accessToken", "scopes"}, ...]``; SettingsError if malformed."""
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise SettingsError(f"TOOLTOOL_CLIENTS_FILE: cannot read {path}: {reason}") from None
        return cls(_parse_clients(entries, path), verifier=verifier)

    async def authenticate_hawk(self, request: HawkRequest) -> Identity:
        try:
            client_id = self._verifier.verify(request, self._access_token)
            header = parse_header(request.authorization)
        except HawkError as exc:
            raise InvalidCredentials(str(exc)) from None
        scopes = self._clients[client_id].scopes
        return Identity(client_id, _authorized(scopes, _ext(header.ext)))

    async def authenticate_basic(self, client_id: str, access_token: str) -> Identity:
        client = self._clients.get(client_id)
        expected = client.access_token if client else secrets.token_urlsafe(32)
        if not hmac.compare_digest(expected.encode(), access_token.encode()) or client is None:
            raise InvalidCredentials("unknown client id or wrong access token")
        return Identity(client.client_id, client.scopes)

    def _access_token(self, client_id: str) -> str | None:
        client = self._clients.get(client_id)
        return client.access_token if client else None


def _parse_clients(entries: Any, path: Path) -> list[Client]:
    problem = f"TOOLTOOL_CLIENTS_FILE: {path} must hold a list of"
    problem += ' {"clientId": str, "accessToken": str, "scopes": [str, ...]}'
    if not isinstance(entries, list):
        raise SettingsError(problem)
    clients = []
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("clientId"), str)
            and entry["clientId"]
            and isinstance(entry.get("accessToken"), str)
            and len(entry["accessToken"]) >= 16
            and isinstance(entry.get("scopes"), list)
            and all(isinstance(scope, str) for scope in entry["scopes"])
        ):
            raise SettingsError(problem + " (access tokens of at least 16 characters)")
        clients.append(Client(entry["clientId"], entry["accessToken"], frozenset(entry["scopes"])))
    return clients


def _ext(ext: str | None) -> dict[str, Any]:
    """Taskcluster's ext: base64 JSON with authorizedScopes and/or a certificate."""
    if not ext:
        return {}
    if len(ext) > MAX_EXT:
        raise InvalidCredentials("the Hawk ext is too long")
    try:
        # Taskcluster clients send URL-safe base64; accept the standard alphabet too.
        standard = ext.replace("-", "+").replace("_", "/")
        data = json.loads(base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True))
    except (ValueError, RecursionError):
        raise InvalidCredentials("the Hawk ext is not base64 JSON") from None
    if not isinstance(data, dict):
        raise InvalidCredentials("the Hawk ext is not a JSON object")
    if "certificate" in data:
        raise InvalidCredentials("temporary credentials are not supported by the clients file")
    return data


def _authorized(scopes: frozenset[str], ext: Mapping[str, Any]) -> frozenset[str]:
    """Narrow `scopes` to the request's authorizedScopes, as Taskcluster does."""
    if "authorizedScopes" not in ext:
        return scopes
    requested = ext["authorizedScopes"]
    if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
        raise InvalidCredentials("authorizedScopes must be a list of strings")
    if not scopeMatch(scopes, [requested]):
        raise InvalidCredentials("authorizedScopes are not satisfied by the client's scopes")
    return frozenset(requested)


def ensure_clients_file(path: Path, scopes: Iterable[str]) -> str | None:
    """Create a clients file holding one development client, unless one exists.

    Returns the new client's id when the file was created.
    """
    client_id = "tooltool-dev"
    entries = [
        {"clientId": client_id, "accessToken": secrets.token_urlsafe(32), "scopes": sorted(scopes)}
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(entries, stream, indent=2)
        stream.write("\n")
    return client_id


class TaskclusterProvider:
    """Asks a Taskcluster deployment to verify Hawk (``auth.authenticateHawk``)."""

    def __init__(self, root_url: str, *, max_retries: int = 1, timeout: float = 10.0) -> None:
        self._root_url = root_url.rstrip("/")
        self._timeout = timeout
        self._options = {"rootUrl": self._root_url, "maxRetries": max_retries}

    async def authenticate_hawk(self, request: HawkRequest) -> Identity:
        try:
            header = parse_header(request.authorization)
        except HawkError as exc:
            raise InvalidCredentials(str(exc)) from None
        answer = await self._ask(
            {
                "method": request.method.lower(),
                "resource": request.resource,
                "host": request.host,
                "port": request.port,
                "authorization": request.authorization,
            }
        )
        try:
            check_payload(header, request)
        except HawkError as exc:
            raise InvalidCredentials(str(exc)) from None
        return answer

    async def authenticate_basic(self, client_id: str, access_token: str) -> Identity:
        # Taskcluster verifies Hawk, not passwords: sign a request with the
        # credentials and ask it to verify that.
        host, port, resource = "tooltool.invalid", 443, "/token"
        try:
            sender = mohawk.Sender(
                {"id": client_id, "key": access_token, "algorithm": "sha256"},
                f"https://{host}:{port}{resource}",
                "POST",
                always_hash_content=False,
            )
        except (mohawk.exc.HawkFail, ValueError):  # UnicodeError included
            raise InvalidCredentials("unusable credentials") from None
        return await self._ask(
            {
                "method": "post",
                "resource": resource,
                "host": host,
                "port": port,
                "authorization": sender.request_header,
            }
        )

    async def _ask(self, payload: dict[str, Any]) -> Identity:
        auth = taskcluster.aio.Auth(self._options)
        try:
            answer = await asyncio.wait_for(auth.authenticateHawk(payload), self._timeout)
        except (
            taskcluster.exceptions.TaskclusterFailure,
            aiohttp.ClientError,  # the client re-raises 5xx answers as these
            TimeoutError,
            OSError,
            ValueError,  # an answer that is not JSON, say
            RecursionError,
        ) as exc:
            logger.error("Taskcluster authenticateHawk failed: %s", type(exc).__name__)
            raise ProviderUnavailable("Taskcluster could not verify the credentials") from None
        if not isinstance(answer, dict) or answer.get("status") != "auth-success":
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            raise InvalidCredentials(f"Taskcluster refused the credentials: {message}"[:300])
        try:
            expires = _timestamp(answer["expires"])
            scopes = frozenset(answer["scopes"])
            if not all(isinstance(scope, str) for scope in scopes):
                raise TypeError("scopes")
            return Identity(str(answer["clientId"]), scopes, expires)
        except (KeyError, TypeError, ValueError, AttributeError):
            # Its shape only: an answer may carry credentials.
            logger.error("unexpected authenticateHawk answer with members %s", sorted(answer))
            raise ProviderUnavailable("Taskcluster answered unexpectedly") from None


def _timestamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
