"""Credentials for auth tests: Hawk headers made by mohawk (not the gateway's own code)."""

from __future__ import annotations

import base64
import json
from typing import Any

import mohawk

PREFIX = "project:releng:services/tooltool/api"

CLIENTS: dict[str, dict[str, Any]] = {
    "reader": {
        "accessToken": "reader-access-token-0123456789",
        "scopes": [f"{PREFIX}/download/public", f"{PREFIX}/download/internal"],
    },
    "admin": {"accessToken": "admin-access-token-0123456789", "scopes": [f"{PREFIX}/*"]},
    "everything": {"accessToken": "everything-token-0123456789", "scopes": ["*"]},
    "nobody": {"accessToken": "nobody-access-token-0123456789", "scopes": ["queue:create-task"]},
    "uploader": {
        "accessToken": "uploader-access-token-0123456789",
        "scopes": [f"{PREFIX}/upload/*", f"{PREFIX}/download/*"],
    },
    "squatter": {
        "accessToken": "squatter-access-token-0123456789",
        "scopes": [f"{PREFIX}/upload/*"],
    },
    "public-uploader": {
        "accessToken": "public-uploader-token-0123456789",
        "scopes": [f"{PREFIX}/upload/public"],
    },
}


def clients_file_entries() -> list[dict[str, Any]]:
    return [{"clientId": client_id, **client} for client_id, client in CLIENTS.items()]


def hawk(
    client_id: str,
    url: str,
    method: str = "GET",
    *,
    body: bytes | None = None,
    content_type: str = "",
    access_token: str | None = None,
    ext: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The header the legacy client sends: sha256, payload hash only for bodies."""
    sender = mohawk.Sender(
        {
            "id": client_id,
            "key": access_token or CLIENTS[client_id]["accessToken"],
            "algorithm": "sha256",
        },
        url,
        method,
        content=body if body is not None else "",
        content_type=content_type,
        always_hash_content=body is not None,
        ext=ext,
        **({"_timestamp": timestamp} if timestamp is not None else {}),
    )
    return sender.request_header


def authorized_scopes_ext(scopes: list[str]) -> str:
    return base64.b64encode(json.dumps({"authorizedScopes": scopes}).encode()).decode()


def basic(client_id: str, access_token: str | None = None) -> str:
    token = access_token or CLIENTS[client_id]["accessToken"]
    return "Basic " + base64.b64encode(f"{client_id}:{token}".encode()).decode()
