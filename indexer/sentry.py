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

What reaches Sentry is bounded too: :class:`EventThrottle` lets one event of a
kind (its logger and message template, or its exception's type) through per
:data:`EVENT_INTERVAL` seconds, so requests answered 503 while a store is down,
or heartbeats failing, cost one event a minute, not one each.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from indexer.config import SettingsError
from indexer.redaction import REDACTED, redact

# Request headers an event keeps (the rest may carry credentials, or a caller's text).
_KEPT_HEADERS = frozenset({"accept", "content-length", "content-type", "user-agent", "host"})
_SECRET_KEYS = ("authorization", "cookie", "token", "secret", "password", "signature", "dsn")
EVENT_INTERVAL = 60.0
# Kinds remembered; past this, the longest-silent kind is forgotten (its next event passes).
EVENT_KINDS = 1000


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
        before_send=EventThrottle().sending(scrub),
        before_breadcrumb=scrub,
        integrations=list(integrations),
    )
    sentry_sdk.set_tag("component", component)
    return True


class EventThrottle:
    """One event of a kind per `interval` seconds; what else comes is dropped."""

    def __init__(
        self,
        *,
        interval: float = EVENT_INTERVAL,
        kinds: int = EVENT_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._kinds = kinds
        self._clock = clock
        self._sent: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self._lock = threading.Lock()

    def allows(self, event: Mapping[str, Any]) -> bool:
        kind = _kind(event)
        now = self._clock()
        with self._lock:
            sent = self._sent.get(kind)
            if sent is not None and now - sent < self._interval:
                return False
            self._sent[kind] = now
            self._sent.move_to_end(kind)
            while len(self._sent) > self._kinds:
                self._sent.popitem(last=False)
            return True

    def sending(self, then: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """A ``before_send``: `then`'s result for the events this throttle allows, else None."""

        def before_send(event: Any, hint: Any = None) -> Any:
            return then(event, hint) if self.allows(event) else None

        return before_send


def _kind(event: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes events the same: the logger and message template, or exception types."""
    logentry = event.get("logentry")
    template = logentry.get("message") if isinstance(logentry, Mapping) else None
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, Mapping) else None
    types = [
        str(value.get("type"))
        for value in (values if isinstance(values, list) else [])
        if isinstance(value, Mapping)
    ]
    return (str(event.get("logger")), str(template), *types)


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
