"""The indexer's lease: one run at a time over a store, held for one pass.

``locks/indexer.json`` names the holder and when its lease expires. A run
takes it by creating it (waiting a little, when asked, for a holder to give it
up), or by replacing one that expired (a compare-and-swap
on the version read, so two runs never both win), renews it from a thread
while it works, and gives it up at the end of its pass: a ``watch`` loop
holds it only while a pass runs, so a scheduled rebuild gets its turn. A
holder that dies loses it when it expires.

The lease keeps runs from doing the same work twice; it is not what keeps
the index right: every write is conditional, so a run stalled past its
expiry and one that took over lose nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from indexer.stores import ObjectNotFound, PreconditionFailed, Store, put_over
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

LEASE_KEY = "locks/indexer.json"
DEFAULT_SECONDS = 300.0
MAX_SECONDS = 86400.0 + 60  # TOOLTOOL_LEASE_SECONDS at most, and a minute of clock skew


class LeaseHeld(Exception):
    """Another run holds the lease."""

    def __init__(self, holder: str, expires: float) -> None:
        super().__init__(f"another run holds the indexer lease: {holder}, until {_when(expires)}")
        self.holder = holder
        self.expires = expires


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def default_holder() -> str:
    return f"{os.environ.get('USER', 'indexer')}@{socket.gethostname()} pid {os.getpid()}"


class Lease:
    """The lease over one store, as a context manager: taken on entry, given up on exit."""

    def __init__(
        self,
        store: Store,
        *,
        holder: str | None = None,
        seconds: float = DEFAULT_SECONDS,
        wait: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.holder = holder or default_holder()
        self._seconds = seconds
        self._wait = wait
        self._clock = clock
        self._token = ""
        self._etag: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lease, waiting up to `wait` seconds for another run to give it up;
        :class:`LeaseHeld` when it still holds it."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._try_acquire()
                return
            except LeaseHeld:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _try_acquire(self) -> None:
        etag: str | None
        try:
            raw, info = self._store.get(LEASE_KEY)
            etag = info.etag
            holder, expires = _parse(raw)
        except ObjectNotFound:
            etag, holder, expires = None, "", 0.0
        now = self._clock()
        # Past any lease a run can take (a garbled or hand-made object): expired.
        if now < expires <= now + MAX_SECONDS:
            raise LeaseHeld(holder, expires)
        self._token = secrets.token_hex(16)
        try:
            self._etag = self._write(etag, self._clock() + self._seconds)
        except PreconditionFailed:  # another run took it between our read and write
            raise LeaseHeld("another run", self._clock() + self._seconds) from None
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        """Give the lease up (when still ours): the next run need not wait for its expiry."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with self._lock:
            if self._etag is None:
                return
            try:
                self._write(self._etag, 0.0)
            except PreconditionFailed:
                pass  # taken over after it expired: no longer ours to give
            except Exception as exc:  # an unreachable store: it expires on its own
                logger.warning("could not give up the indexer lease: %s", exc)
            self._etag = None

    def __enter__(self) -> Lease:
        self.acquire(wait=self._wait)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            with self._lock:
                if self._etag is None:
                    return
                try:
                    self._etag = self._write(self._etag, self._clock() + self._seconds)
                except PreconditionFailed:
                    self._etag = self._still_ours()
                    if self._etag is None:
                        logger.error("the indexer lease was taken over: this run was too slow")
                        return
                except Exception as exc:  # tried again at the next renewal
                    logger.warning("could not renew the indexer lease: %s", exc)

    def _still_ours(self) -> str | None:
        """The lease's version when it still holds this run's token (a renewal whose
        answer was lost was written all the same), else None."""
        try:
            raw, info = self._store.get(LEASE_KEY)
            data = loads_strict(raw)
        except (ObjectNotFound, StrictJsonError):
            return None
        return info.etag if isinstance(data, dict) and data.get("token") == self._token else None

    def _write(self, etag: str | None, expires: float) -> str:
        data = {"holder": self.holder[:200], "token": self._token, "expires": expires}
        info = put_over(self._store, LEASE_KEY, json.dumps(data).encode(), etag=etag)
        return info.etag


def lease_expires(store: Store) -> float:
    """When the current lease expires (POSIX seconds); 0 when none is held or it was given
    up. A time ahead means a run holds it and keeps renewing it: a pass is running."""
    try:
        raw, _ = store.get(LEASE_KEY)
    except ObjectNotFound:
        return 0.0
    return _parse(raw)[1]


def _parse(raw: bytes) -> tuple[str, float]:
    """Holder and expiry of a lease object; an unreadable one counts as expired."""
    try:
        data = loads_strict(raw)
        holder, expires = data["holder"], data["expires"]
    except (StrictJsonError, KeyError, TypeError):
        logger.error("the indexer lease object is unreadable; taking it over")
        return "", 0.0
    if not isinstance(holder, str) or type(expires) not in (int, float):
        return "", 0.0
    return holder, float(expires) if math.isfinite(expires) else 0.0
