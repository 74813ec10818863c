"""Who the client is to the server: the legacy client's rules.

``--authentication-file F``: JSON ``{"clientId", "accessToken"}`` signs each
request with Hawk (sha256, no ``ext``, a payload hash over JSON bodies); any
other text is sent as ``Authorization: Bearer <text>``. Without a file,
``TASKCLUSTER_CLIENT_ID`` and ``TASKCLUSTER_ACCESS_TOKEN`` sign with Hawk; with
neither, requests are anonymous (inside a task, the Taskcluster proxy adds its
own credentials). The header goes to the server only, never to a signed URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tooltool_client.errors import CredentialsError


class Credentials(Protocol):
    """Makes the ``Authorization`` header of one request, or None for none."""

    def header(self, method: str, url: str, body: bytes | None) -> str | None: ...


class Anonymous:
    def header(self, method: str, url: str, body: bytes | None) -> str | None:
        return None


@dataclass(frozen=True)
class Bearer:
    token: str

    def header(self, method: str, url: str, body: bytes | None) -> str | None:
        return f"Bearer {self.token}"

    def __repr__(self) -> str:  # never the token
        return "Bearer(...)"


@dataclass(frozen=True)
class Hawk:
    client_id: str
    access_token: str

    def header(self, method: str, url: str, body: bytes | None) -> str | None:
        credentials = {"id": self.client_id, "key": self.access_token, "algorithm": "sha256"}
        import mohawk  # here: anonymous and Bearer runs never pay for importing it
        import mohawk.exc

        try:
            if body is None:
                sender = mohawk.Sender(credentials, url, method, always_hash_content=False)
            else:
                sender = mohawk.Sender(
                    credentials, url, method, content=body, content_type="application/json"
                )
        except mohawk.exc.HawkFail:  # the id goes into the header as is: a quote, say
            raise CredentialsError(
                f"the clientId {self.client_id!r} cannot be sent in a Hawk header"
            ) from None
        return str(sender.request_header)

    def __repr__(self) -> str:  # never the access token
        return f"Hawk(client_id={self.client_id!r})"


def from_options(auth_file: str | None, environ: Mapping[str, str]) -> Credentials:
    """The credentials the legacy client would use for these options and environment."""
    if auth_file:
        return from_file(Path(os.path.expanduser(auth_file)))
    client_id = environ.get("TASKCLUSTER_CLIENT_ID")
    access_token = environ.get("TASKCLUSTER_ACCESS_TOKEN")
    if client_id and access_token:
        return Hawk(client_id, access_token)
    return Anonymous()


def from_file(path: Path) -> Credentials:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CredentialsError(f"authentication file '{path}' cannot be read: {reason}") from None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    except RecursionError:  # JSON, nested too deep to be credentials
        parsed = []
    if parsed is None:
        # Sent as a header: ASCII, and nothing that could end or break it.
        if not text or not text.isascii() or not text.isprintable():
            raise CredentialsError(f"authentication file '{path}' holds no usable token")
        return Bearer(text)
    if (
        not isinstance(parsed, dict)
        or not isinstance(parsed.get("clientId"), str)
        or not isinstance(parsed.get("accessToken"), str)
    ):
        raise CredentialsError(
            f"authentication file '{path}' is JSON without a clientId and accessToken"
        )
    return Hawk(parsed["clientId"], parsed["accessToken"])
