"""When the indexer last finished a pass: ``status/last-pass.json`` in the index region.

Every pass that ends (``run``, ``watch``, the embedded loop) writes it whole, last:
``{"started": <POSIX time>, "finished": <POSIX time>}``. A gateway's heartbeat reads
it (one small object) to tell whether an indexer is alive: with none, an upload is
accepted and then waits forever (:mod:`gateway.indexer_health`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

from indexer.stores import ObjectNotFound, Store
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

MARKER_KEY = "status/last-pass.json"


@dataclass(frozen=True, slots=True)
class LastPass:
    """The last pass that ended: when it started and when it finished (POSIX seconds)."""

    started: float
    finished: float

    def to_json(self) -> bytes:
        return json.dumps({"finished": self.finished, "started": self.started}).encode()


def record_pass(store: Store, last: LastPass) -> None:
    """Write the marker (whole: a reader sees this pass or the one before)."""
    store.put(MARKER_KEY, last.to_json(), content_type="application/json")


def read_last_pass(store: Store) -> LastPass | None:
    """The marker; None when no pass ever ended, or the marker is unreadable (logged)."""
    try:
        raw, _ = store.get(MARKER_KEY)
    except ObjectNotFound:
        return None
    try:
        data = loads_strict(raw)
        started, finished = data["started"], data["finished"]
    except (StrictJsonError, KeyError, TypeError):
        logger.error("%s is unreadable; the next indexer pass rewrites it", MARKER_KEY)
        return None
    times = (started, finished)
    if not all(type(t) in (int, float) and math.isfinite(t) for t in times):
        logger.error("%s holds no times; the next indexer pass rewrites it", MARKER_KEY)
        return None
    return LastPass(float(started), float(finished))
