"""Whether an indexer is alive, for ``/__heartbeat__`` (S3 mode, with the indexer apart).

Without an indexer, an upload is accepted (202) and then never downloadable. The
heartbeat tells so from three bounded reads of the store: the marker every finished
pass writes (:mod:`indexer.last_pass`), the lease (a pass running now renews it), and
the first staged upload of each region (one listing page, whatever the store holds).

- ``stale``: no pass finished within `max_pass_age` seconds and none is running;
- ``uploads-waiting``: bytes are staged (an upload waits to be verified) and no pass
  started within `max_upload_wait` seconds: the uploads are that late, or about to be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexer.intake import STAGING
from indexer.last_pass import read_last_pass
from indexer.lease import lease_expires
from indexer.stores import Regions

OK = "ok"
STALE = "stale"
UPLOADS_WAITING = "uploads-waiting"


@dataclass(frozen=True, slots=True)
class IndexerState:
    """What the heartbeat reports of the indexer."""

    status: str
    last_pass_age: float | None  # seconds since the last pass finished; None: never
    running: bool  # a pass holds the lease now
    uploads_waiting: bool  # bytes staged, not yet verified

    def details(self) -> dict[str, Any]:
        age = None if self.last_pass_age is None else round(self.last_pass_age, 1)
        return {
            "last_pass_age": age,
            "running": self.running,
            "uploads_waiting": self.uploads_waiting,
        }


class IndexerHealth:
    """Judges the indexer's liveness from the store (blocking: run it in a thread)."""

    def __init__(
        self,
        regions: Regions,
        *,
        max_pass_age: float,
        max_upload_wait: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._regions = regions
        self._max_pass_age = max_pass_age
        self._max_upload_wait = max_upload_wait
        self._clock = clock

    def check(self) -> IndexerState:
        """The indexer's state now; store errors propagate (the check reports ``error``)."""
        index = self._regions.index
        last = read_last_pass(index)
        now = self._clock()
        running = lease_expires(index) > now
        waiting = any(next(iter(store.list(STAGING)), None) is not None for store in self._regions)
        age = None if last is None else max(0.0, now - last.finished)
        since_start = None if last is None else now - last.started
        if not running and (age is None or age > self._max_pass_age):
            status = STALE
        elif waiting and (since_start is None or since_start > self._max_upload_wait):
            status = UPLOADS_WAITING
        else:
            status = OK
        return IndexerState(status, age, running, waiting)
