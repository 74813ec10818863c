"""``token``: Taskcluster credentials exchanged for a short-lived token (``POST token``).

The credentials are those of every command (``--authentication-file`` with a
``clientId`` and ``accessToken``, else ``TASKCLUSTER_CLIENT_ID`` and
``TASKCLUSTER_ACCESS_TOKEN``, else the Taskcluster proxy's, inside a task);
``--scope`` (repeatable) and ``--expires-in`` narrow what is asked for. The token
is printed alone on stdout, so that ``$(tooltool token)`` is the token; with
``--token-file F`` it is written to F whole (mode 0600 from the start, a
temporary file renamed) and nothing is printed. F then works as the
``--authentication-file`` of every other command (``Authorization: Bearer``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tooltool_client import credentials
from tooltool_client.api import problem
from tooltool_client.errors import ClientError, CredentialsError, ServerError

if TYPE_CHECKING:
    from tooltool_client.cli import Context

logger = logging.getLogger("tooltool")

# A JWT (base64url parts and dots); nothing that could break a header or a terminal.
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=]{1,16384}")


def token(context: Context) -> bool:
    _require_credentials(context)
    options = context.options
    request: dict[str, Any] = {}
    if options.scopes:
        request["scopes"] = options.scopes
    if options.expires_in:
        request["expires_in"] = options.expires_in
    status, _, body = context.servers[0].call("POST", "token", data=request or None)
    if status != 200:
        raise ServerError(f"no token: {problem(status, body)}")
    issued = _issued(body)
    if options.token_file:
        path = Path(os.path.expanduser(options.token_file))
        save(path, issued["token"])
        logger.info("token saved in %s%s", path, _about(issued))
    else:
        print(issued["token"], file=context.stdout)
        logger.info("token%s", _about(issued))
    return True


def _require_credentials(context: Context) -> None:
    """Refuse early what the server would refuse: no credentials, or a token already."""
    found = credentials.from_options(context.options.auth_file, context.environ)
    if isinstance(found, credentials.Bearer):
        raise CredentialsError(
            "a token cannot be exchanged for another: the authentication file holds a token,"
            " not Taskcluster credentials (clientId and accessToken)"
        )
    through_proxy = not context.options.base_url and context.environ.get("TASKCLUSTER_PROXY_URL")
    if isinstance(found, credentials.Anonymous) and not through_proxy:
        raise CredentialsError(
            "token command requires credentials: --authentication-file with a clientId and"
            " accessToken, or TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN"
        )


def _issued(body: bytes) -> dict[str, Any]:
    try:
        issued = json.loads(body)
        if not isinstance(issued, dict) or not _TOKEN.fullmatch(issued["token"]):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ServerError("the server answered with something that is not a token") from None
    return issued


def _about(issued: dict[str, Any]) -> str:
    """When the token expires and what it holds, as far as the answer says (printable)."""
    parts = []
    if isinstance(issued.get("expires"), str) and issued["expires"].isprintable():
        parts.append(f"expires {issued['expires']}")
    scopes = issued.get("scopes")
    if isinstance(scopes, list) and all(isinstance(s, str) and s.isprintable() for s in scopes):
        parts.append(f"scopes: {', '.join(scopes) or 'none'}")
    return f" ({'; '.join(parts)})" if parts else ""


def save(path: Path, text: str) -> None:
    """Write `text` to `path` whole, readable by its owner only from the first byte."""
    temporary: str | None = None
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )  # mode 0600
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise ClientError(f"token file '{path}' cannot be written: {exc.strerror}") from None
