"""Hawk request authentication, as Taskcluster clients and the legacy ``tooltool.py`` send it.

Header: ``Authorization: Hawk id="…", ts="…", nonce="…", mac="…"[, hash="…"][, ext="…"]``
with sha256 MACs over the normalised request (method, resource, host, port,
payload hash, ext). See the Hawk specification (hueniverse/hawk, v1) and
Taskcluster's use of it. Local verification checks the MAC in constant time,
the timestamp skew, the payload hash when the client sent one, and replayed
nonces within the skew window.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_HEADER_LENGTH = 4096
MAX_NONCE_LENGTH = 128  # clients send 6 to 22 characters
_ATTRIBUTE = re.compile(r'\s*(?P<key>[a-z]+)="(?P<value>[^"\\]*)"\s*(?:,|$)')
_ALLOWED_KEYS = frozenset({"id", "ts", "nonce", "hash", "ext", "mac", "app", "dlg"})
# Printable ASCII without quote and backslash, as the Hawk spec allows.
_VALUE = re.compile(r"[ !#-\[\]-~]*")


class HawkError(Exception):
    """A Hawk header that does not authenticate its request; the message says why."""


@dataclass(frozen=True, slots=True)
class HawkRequest:
    """What a Hawk MAC covers, as the client saw the request."""

    method: str
    resource: str  # path and query, exactly as sent
    host: str
    port: int
    authorization: str
    content_type: str | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class HawkHeader:
    """The parsed attributes of a Hawk Authorization header."""

    id: str
    ts: str
    nonce: str
    mac: str
    hash: str | None = None
    ext: str | None = None
    app: str | None = None
    dlg: str | None = None


def parse_header(authorization: str) -> HawkHeader:
    """Parse ``Hawk id="…", …`` strictly: known keys, once each, nothing left over."""
    if len(authorization) > MAX_HEADER_LENGTH:
        raise HawkError("the Hawk header is too long")
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "hawk":
        raise HawkError("not a Hawk header")
    attributes: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _ATTRIBUTE.match(rest, position)
        if match is None or match.end() == position:
            raise HawkError("the Hawk header is malformed")
        key, value = match.group("key"), match.group("value")
        if key not in _ALLOWED_KEYS:
            raise HawkError(f"unknown Hawk attribute {key[:20]!r}")
        if key in attributes:
            raise HawkError(f"duplicate Hawk attribute {key!r}")
        if not _VALUE.fullmatch(value):
            raise HawkError(f"bad characters in Hawk attribute {key!r}")
        attributes[key] = value
        position = match.end()
    missing = [key for key in ("id", "ts", "nonce", "mac") if not attributes.get(key)]
    if missing:
        raise HawkError("the Hawk header lacks " + ", ".join(missing))
    if len(attributes["nonce"]) > MAX_NONCE_LENGTH:
        raise HawkError(f"the Hawk nonce is longer than {MAX_NONCE_LENGTH} characters")
    return HawkHeader(**attributes)


def payload_hash(body: bytes, content_type: str | None) -> str:
    """The Hawk payload hash (sha256, base64) of a body with its content type."""
    mime = (content_type or "").split(";")[0].strip().lower()
    digest = hashlib.sha256()
    digest.update(b"hawk.1.payload\n" + mime.encode("latin-1") + b"\n")
    digest.update(body)
    digest.update(b"\n")
    return base64.b64encode(digest.digest()).decode("ascii")


def request_mac(header: HawkHeader, request: HawkRequest, access_token: str) -> str:
    """The MAC (sha256, base64) a client holding `access_token` computes for `request`."""
    lines = [
        "hawk.1.header",
        header.ts,
        header.nonce,
        request.method.upper(),
        request.resource,
        request.host.lower(),
        str(request.port),
        header.hash or "",
        _escape(header.ext or ""),
    ]
    if header.app:
        lines += [header.app, header.dlg or ""]
    normalized = "\n".join(lines) + "\n"
    mac = hmac.new(access_token.encode("utf-8"), normalized.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def check_payload(header: HawkHeader, request: HawkRequest) -> None:
    """When the client hashed its payload, the body must match that hash."""
    if header.hash is None:
        return
    expected = payload_hash(request.body or b"", request.content_type)
    if not hmac.compare_digest(expected.encode(), header.hash.encode()):
        raise HawkError("the payload does not match its Hawk hash")


class NonceCache:
    """Nonces seen within the skew window, to refuse replayed requests, in bounded memory.

    A nonce is remembered until its timestamp is out of the skew window (after
    that the request is refused for its timestamp anyway), and forgotten then:
    expired entries are dropped on every check, and the table is rebuilt when
    it has shrunk well below its peak, so the memory is given back. Memory is
    bounded in bytes (`max_bytes`, an estimate per entry): when full, the
    entries closest to expiry go first, and the client whose entry went is
    from then on refused any timestamp up to the forgotten one's, so a
    forgotten nonce can never be replayed.
    """

    def __init__(self, *, window: float, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._window = window
        self._max_bytes = max_bytes
        self._seen: dict[tuple[str, str, str], float] = {}
        self._expiries: list[tuple[float, tuple[str, str, str]]] = []
        self._floor: dict[str, int] = {}  # client id -> newest timestamp forgotten early
        self._bytes = 0
        self._peak = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """The estimated memory the remembered nonces hold."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, client_id: str, ts: str, nonce: str, now: float) -> None:
        key = (client_id, ts, nonce)
        timestamp = int(ts)
        with self._lock:
            self._expire(now)
            if key in self._seen:
                raise HawkError("the Hawk nonce was already used")
            if timestamp <= self._floor.get(client_id, -1):
                raise HawkError("the Hawk timestamp is too old for the replay memory; retry")
            self._seen[key] = expires = timestamp + self._window
            heapq.heappush(self._expiries, (expires, key))
            self._bytes += _entry_bytes(key)
            self._peak = max(self._peak, len(self._seen))
            while self._bytes > self._max_bytes:
                self._forget_oldest(early=True)

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            self._forget_oldest(early=False)
        if self._peak > 1024 and len(self._seen) < self._peak // 4:
            # dicts and lists never shrink by themselves: copy them to give the memory back.
            self._seen = dict(self._seen)
            self._expiries = list(self._expiries)
            self._peak = len(self._seen)
            self._floor = {
                client: ts for client, ts in self._floor.items() if ts + self._window >= now
            }

    def _forget_oldest(self, *, early: bool) -> None:
        _, key = heapq.heappop(self._expiries)
        del self._seen[key]
        self._bytes -= _entry_bytes(key)
        if early:
            client_id, ts, _ = key
            self._floor[client_id] = max(self._floor.get(client_id, -1), int(ts))


def _entry_bytes(key: tuple[str, str, str]) -> int:
    # Three strings, the tuple, a dict slot and a heap entry: about 300 bytes and the text.
    return 300 + sum(len(part) for part in key)


class HawkVerifier:
    """Verifies Hawk requests against permanent credentials held locally."""

    def __init__(
        self,
        *,
        skew: float = 60.0,
        nonce_cache_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._skew = skew
        self._clock = clock
        self.nonces = NonceCache(window=skew, max_bytes=nonce_cache_bytes)

    def verify(self, request: HawkRequest, access_token: Callable[[str], str | None]) -> str:
        """The client id of a valid request; `access_token` looks up a client's secret."""
        header = parse_header(request.authorization)
        token = access_token(header.id)
        # One answer for unknown ids and wrong MACs: client ids are not enumerable.
        expected = request_mac(header, request, token or secrets.token_urlsafe(32))
        mac_matches = hmac.compare_digest(expected.encode(), header.mac.encode("utf-8", "replace"))
        if token is None or not mac_matches:
            raise HawkError("unknown client id or a MAC that does not match the request")
        now = self._clock()
        if not (header.ts.isascii() and header.ts.isdigit() and len(header.ts) <= 12):
            raise HawkError("the Hawk timestamp is not a number")
        timestamp = int(header.ts)
        if abs(now - timestamp) > self._skew:
            raise HawkError("the Hawk timestamp is outside the allowed clock skew")
        check_payload(header, request)
        self.nonces.check_and_remember(header.id, header.ts, header.nonce, now)
        return header.id


def _escape(ext: str) -> str:
    return ext.replace("\\", "\\\\").replace("\n", "\\n")
