"""Error reports to Sentry when ``SENTRY_DSN`` is set, with no secret in them.

Sentry's client is process-wide; :func:`init_sentry` is called once, by a
command's ``main`` (and by each gateway worker). What an event may carry is cut
down where it is made and scrubbed before it is sent:

- ``send_default_pii=False``: no cookies, no caller addresses, and Sentry's own
  filter drops ``Authorization`` and the like from request headers;
- no local variables in stack frames (a frame's locals can hold a token) and no
  request bodies;
- :func:`scrub`, as ``before_send`` and ``before_breadcrumb``: every remaining
  header but a few harmless ones, the query string (a signed URL's signature)
  and cookies are dropped, and every string left passes :func:`redact` (the
  log lines' last defence: JWTs, Bearer/Basic/Hawk credentials, signatures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from indexer.config import SettingsError
from indexer.redaction import REDACTED, redact

# Request headers an event keeps (the rest may carry credentials, or a caller's text).
_KEPT_HEADERS = frozenset({"accept", "content-length", "content-type", "user-agent", "host"})
_SECRET_KEYS = ("authorization", "cookie", "token", "secret", "password", "signature", "dsn")


def sentry_dsn(environ: Mapping[str, str]) -> str | None:
    """``SENTRY_DSN``, checked; None when unset. :class:`SettingsError` names a bad one
    (without its key)."""
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return None
    # Imported only when configured: it takes a gateway worker a while to import.
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(dsn)
    except BadDsn as exc:
        reason = str(exc).split(" (", 1)[0]  # Sentry's message may quote the DSN's path
        raise SettingsError(
            f"SENTRY_DSN: expected a Sentry DSN (key as user, project id as path): {reason}"
        ) from None
    return dsn


def init_sentry(
    dsn: str | None,
    *,
    component: str,
    environment: str | None = None,
    integrations: Sequence[Any] = (),
) -> bool:
    """Start reporting errors of `component` (``gateway``, ``indexer``) to `dsn`; whether
    it did (no DSN: nothing is sent)."""
    if dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub,
        before_breadcrumb=scrub,
        integrations=list(integrations),
    )
    sentry_sdk.set_tag("component", component)
    return True


def scrub(event: Any, hint: Any = None) -> Any:
    """`event` (or breadcrumb) with no credential left in it."""
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value for name, value in headers.items() if name.lower() in _KEPT_HEADERS
            }
        for member in ("query_string", "cookies", "data", "env"):
            if request.get(member):
                request[member] = REDACTED
    return _scrubbed(event)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_KEYS)
            else _scrubbed(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value
