"""The indexer's watch loop, run in the gateway's process on the embedded default."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from indexer.job import Indexer, PassReport
from indexer.lease import Lease, LeaseHeld
from indexer.pass_metrics import PassMetrics, outcome_of

logger = logging.getLogger(__name__)


class EmbeddedIndexer:
    """Runs indexer passes in a thread every `interval` seconds, or sooner when woken."""

    def __init__(
        self,
        indexer: Indexer,
        *,
        interval: float,
        lease: Callable[[], Lease],
        check_every: int = 300,
        passes: PassMetrics | None = None,
    ) -> None:
        self._indexer = indexer
        self._passes = passes
        self._lease = lease
        self._interval = interval
        self._check_every = check_every
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tooltool-indexer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a pass now (an upload was reported complete)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        passes = 0
        while not self._stop.is_set():
            check = passes % self._check_every == 0
            started = time.monotonic()
            report: PassReport | None = None
            try:
                with self._lease():  # per pass: other gateways and scheduled runs take turns
                    report = self._indexer.run_once(check=check)
                passes += 1
                outcome = outcome_of(is_partial=report.is_partial)
            except LeaseHeld as exc:
                logger.debug("skipping this pass: %s", exc)
                outcome = "skipped"
            except Exception:  # the loop must outlive one failed pass
                logger.exception("indexer pass failed")
                passes += 1
                outcome = "failed"
            if self._passes is not None:
                kind = "check" if check else "pass"
                self._passes.record(kind, time.monotonic() - started, outcome, report)
            self._wake.wait(self._interval)
            self._wake.clear()
