"""A small Taskcluster-auth double over real HTTP that verifies Hawk for real (mohawk).

It answers ``POST /api/auth/v1/authenticate-hawk`` and ``GET /api/auth/v1/ping``
as the Taskcluster auth service documents them, for permanent clients,
temporary credentials (certificates) and authorizedScopes. It counts the
requests it gets, and can be switched to failing to act out an outage.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import mohawk
import mohawk.base
import mohawk.exc
import mohawk.util
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from taskcluster.utils import scopeMatch


@dataclass
class TaskclusterDouble:
    """Clients by id; `requests` counts authenticate-hawk calls; `is_down` answers 500."""

    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    is_down: bool = False
    seen_nonces: set[tuple[str, str, str]] = field(default_factory=set)

    def add_client(
        self, client_id: str, access_token: str, scopes: list[str], *, expires_in: int = 30 * 86400
    ) -> None:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
        self.clients[client_id] = {
            "accessToken": access_token,
            "scopes": scopes,
            "expires": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/auth/v1/authenticate-hawk", self.authenticate_hawk, methods=["POST"]),
                Route("/api/auth/v1/ping", self.ping, methods=["GET"]),
            ]
        )

    async def ping(self, request: Request) -> JSONResponse:
        return JSONResponse({"alive": True, "uptime": 1})

    async def authenticate_hawk(self, request: Request) -> JSONResponse:
        self.requests += 1
        if self.is_down:
            return JSONResponse({"code": "InternalServerError", "message": "down"}, 500)
        body = await request.json()
        try:
            return JSONResponse(self._authenticate(body))
        except _Failed as exc:
            return JSONResponse({"status": "auth-failed", "message": str(exc)})
        except (ValueError, KeyError, TypeError, RecursionError, mohawk.exc.HawkFail) as exc:
            return JSONResponse({"status": "auth-failed", "message": f"malformed: {exc!r}"[:200]})

    def _authenticate(self, body: dict[str, Any]) -> dict[str, Any]:
        authorization = body["authorization"]
        attributes = mohawk.util.parse_authorization_header(authorization)
        ext = _ext(attributes.get("ext"))
        client_id, access_token, scopes, expires = self._credentials(attributes["id"], ext)
        url = f"https://{body['host']}:{body['port']}{body['resource']}"
        # The MAC covers the header's payload hash; the payload itself is the
        # caller's to check (Taskcluster never sees it), so mohawk's Resource
        # and calculate_mac are used directly rather than its Receiver.
        resource = mohawk.base.Resource(
            credentials={"id": client_id, "key": access_token, "algorithm": "sha256"},
            url=url,
            method=body["method"].upper(),
            ext=attributes.get("ext"),
            app=attributes.get("app"),
            dlg=attributes.get("dlg"),
            timestamp=attributes["ts"],
            nonce=attributes["nonce"],
            always_hash_content=False,
        )
        mac = mohawk.util.calculate_mac("header", resource, attributes.get("hash"))
        if not mohawk.util.strings_match(mac, attributes["mac"]):
            raise _Failed("ext/mac mismatch")
        if not attributes["ts"].isdigit() or abs(time.time() - int(attributes["ts"][:12])) > 60:
            raise _Failed("timestamp outside the allowed skew")
        if self._seen_nonce(client_id, attributes["nonce"], attributes["ts"]):
            raise _Failed("nonce already used")
        if "authorizedScopes" in ext:
            if not scopeMatch(scopes, [ext["authorizedScopes"]]):
                raise _Failed("authorizedScopes not satisfied")
            scopes = ext["authorizedScopes"]
        answer = {
            "status": "auth-success",
            "scheme": "hawk",
            "clientId": client_id,
            "scopes": scopes,
            "expires": expires,
        }
        if attributes.get("hash"):
            answer["hash"] = attributes["hash"]
        return answer

    def _credentials(self, header_id: str, ext: dict[str, Any]) -> tuple[str, str, list, str]:
        certificate = ext.get("certificate")
        if certificate is None:
            client = self.clients.get(header_id)
            if client is None:
                raise _Failed(f"client {header_id} not found")
            return header_id, client["accessToken"], client["scopes"], client["expires"]
        issuer_id = certificate.get("issuer", header_id)
        issuer = self.clients.get(issuer_id)
        if issuer is None:
            raise _Failed(f"issuer {issuer_id} not found")
        key = issuer["accessToken"].encode()
        lines = [f"version:{certificate['version']}"]
        if "issuer" in certificate:
            lines += [f"clientId:{header_id}", f"issuer:{issuer_id}"]
        lines += [
            f"seed:{certificate['seed']}",
            f"start:{certificate['start']}",
            f"expiry:{certificate['expiry']}",
            "scopes:",
            *certificate["scopes"],
        ]
        signature = base64.b64encode(
            hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(signature, certificate["signature"]):
            raise _Failed("certificate signature mismatch")
        now_ms = time.time() * 1000
        if not certificate["start"] - 300_000 <= now_ms <= certificate["expiry"]:
            raise _Failed("certificate expired or not yet valid")
        if not scopeMatch(issuer["scopes"], [certificate["scopes"]]):
            raise _Failed("the issuer does not hold the certificate's scopes")
        token = (
            base64.urlsafe_b64encode(
                hmac.new(key, certificate["seed"].encode(), hashlib.sha256).digest()
            )
            .decode()
            .rstrip("=")
        )
        expires = dt.datetime.fromtimestamp(certificate["expiry"] / 1000, dt.UTC)
        return header_id, token, certificate["scopes"], expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _seen_nonce(self, client_id: str, nonce: str, ts: str) -> bool:
        key = (client_id, nonce, ts)
        if key in self.seen_nonces:
            return True
        self.seen_nonces.add(key)
        return False


class _Failed(Exception):
    pass


def _ext(ext: str | None) -> dict[str, Any]:
    if not ext:
        return {}
    standard = ext.replace("-", "+").replace("_", "/")
    return json.loads(base64.b64decode(standard + "=" * (-len(standard) % 4)))
