"""Redirects to signed download URLs, each URL handed out again for a bounded window.

Signing is most of what a cached download costs (boto3 takes 160 to 290 µs a URL,
a CloudFront RSA signature about a millisecond), so a URL signed for a blob is
reused by the callers that ask for it within ``reuse_seconds``
(``TOOLTOOL_SIGNED_URL_REUSE_SECONDS``): a hot file costs one signature per
window, per region, whatever the request rate.

What a caller gets, in the worst case: a URL signed at wall time ``s`` for
``expires_in`` seconds expires at ``floor(s) + expires_in`` or later (signers
count whole seconds, from a clock read no earlier than ``s``), and is handed
out only while ``now < floor(s) + reuse_seconds``. So every caller gets more
than ``expires_in - reuse_seconds`` seconds, and no URL is valid longer than
``expires_in`` after its signing: reuse never extends a URL's life.

The local store's URLs are root-relative: their redirects are made absolute
with the address the client used, and kept apart per address (only short
addresses are kept: the client chooses its Host header).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer.stores import Store

# The legacy (Werkzeug) redirect page, which the seed's first curl check shows.
_REDIRECT_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
    "<title>Redirecting...</title>\n"
    "<h1>Redirecting...</h1>\n"
    '<p>You should be redirected automatically to target URL: <a href="{url}">{url}</a>.'
    "  If not click the link."
)
MAX_ENTRIES = 10_000
# The longest client address (scheme, host, port, root path) whose redirects are kept:
# real ones are short, and the Host header is the client's to choose, so this bounds an
# entry (about 2 KiB) and the whole cache (about 20 MiB).
MAX_KEPT_ADDRESS = 256

# A CDN's signer: the URL of a key, valid until an absolute POSIX time.
CdnSigner = Callable[[str, int], str]


@dataclass(frozen=True, slots=True)
class Redirect:
    """A 302 to a signed URL, as sent: never cached by anyone, since the URL expires."""

    url: str
    body: bytes
    raw_headers: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def to(cls, url: str) -> Redirect:
        body = _REDIRECT_PAGE.format(url=html.escape(url, quote=True)).encode("utf-8")
        # In Starlette's order for Response(body, headers={Location, Cache-Control}).
        headers = (
            (b"location", url.encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"content-type", b"text/html; charset=utf-8"),
        )
        return cls(url, body, headers)


@dataclass(frozen=True, slots=True)
class _Entry:
    redirect: Redirect
    reusable_until: float


class DownloadUrls:
    """Signs download URLs (the store's, or a CDN's) and reuses them within a window."""

    def __init__(
        self,
        *,
        expires_in: int,
        reuse_seconds: int,
        cdn: CdnSigner | None = None,
        cdn_region: str | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= reuse_seconds < expires_in:
            raise ValueError("reuse_seconds must be at least 0 and under expires_in")
        self.expires_in = expires_in
        self.reuse_seconds = reuse_seconds
        self._cdn = cdn
        self._cdn_region = cdn_region  # the CDN's origin; None: every region
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._relative: dict[str, bool] = {}  # by region: whether its URLs are root-relative
        self.reused = 0  # redirects to a URL signed before
        self.signed = 0  # URLs signed

    def redirect(self, store: Store, key: str, base: Callable[[], str]) -> Redirect:
        """The redirect to `key` in `store`; `base` (scheme, host, port and root path the
        client used) is called only for a store whose URLs are root-relative."""
        region = store.region
        address = base() if self._relative.get(region, False) else ""
        cache_key = (region, key, address)
        now = self._clock()
        entry = self._entries.get(cache_key)
        if entry is not None and now < entry.reusable_until:
            self.reused += 1
            return entry.redirect
        self.signed += 1
        signed_at = math.floor(now)
        url = self._sign(store, key, signed_at)
        is_relative = url.startswith("/")
        if is_relative != self._relative.get(region, False):
            self._relative[region] = is_relative
            address = base() if is_relative else ""
            cache_key = (region, key, address)
        redirect = Redirect.to(address + url)
        if self.reuse_seconds > 0 and len(address) <= MAX_KEPT_ADDRESS:
            self._remember(cache_key, _Entry(redirect, signed_at + self.reuse_seconds), now)
        return redirect

    def _sign(self, store: Store, key: str, signed_at: int) -> str:
        if self._cdn is not None and self._cdn_region in (None, store.region):
            return self._cdn(key, signed_at + self.expires_in)
        return store.presign_get(key, expires_in=self.expires_in)

    def _remember(self, cache_key: tuple[str, str, str], entry: _Entry, now: float) -> None:
        entries = self._entries
        entries.pop(cache_key, None)  # re-inserted last: entries stay in signing order
        entries[cache_key] = entry
        # So the first is the oldest: drop it while it is past its window, or one too many.
        while entries:
            first = next(iter(entries))
            if entries[first].reusable_until > now and len(entries) <= self._max_entries:
                break
            del entries[first]
