"""The indexer's metrics: its passes' durations and outcomes, bytes verified, pending age.

Kept in a :class:`indexer.metrics.Metrics` (with the store calls of the same
process): the gateway's ``/__metrics__`` shows the embedded loop's, and
``tooltool-indexer`` writes them to a file for node_exporter's textfile
collector (``--metrics-file`` or ``TOOLTOOL_METRICS_FILE``), atomically, after
every pass. Counters count from the start of the process: a ``run`` from cron
writes its one pass; the ``last_pass`` gauges say the same whatever the schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from indexer.job import PassReport
from indexer.metrics import Metrics

logger = logging.getLogger(__name__)

# Seconds: a frequent pass with nothing to do takes milliseconds, a check or a rebuild
# of a large store hours.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
# Outcomes: complete, partial (something set aside, or a region unreachable), failed
# (an error stopped it), skipped (another run held the lease).
OUTCOMES = ("complete", "partial", "failed", "skipped")


def outcome_of(*, is_partial: bool) -> str:
    return "partial" if is_partial else "complete"


class PassMetrics:
    """Counts indexer passes into `metrics`; writes them to `path` after each, if given."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._path = path
        self._clock = clock
        self._passes = metrics.counter(
            "tooltool_indexer_passes", "Indexer passes by kind and outcome", ("kind", "outcome")
        )
        self._seconds = metrics.histogram(
            "tooltool_indexer_pass_duration_seconds",
            "How long indexer passes took, by kind",
            ("kind",),
            buckets=PASS_BUCKETS,
        )
        self._verified = metrics.counter(
            "tooltool_indexer_verified_bytes", "Bytes of uploads verified and indexed"
        )
        self._uploads = metrics.counter(
            "tooltool_indexer_uploads",
            "Pending uploads handled, by result (indexed, recorded, failed, expired)",
            ("result",),
        )
        self._last_seconds = metrics.gauge(
            "tooltool_indexer_last_pass_duration_seconds", "How long the last pass took"
        )
        self._last_at = metrics.gauge(
            "tooltool_indexer_last_pass_timestamp_seconds",
            "When the last pass of each outcome ended (Unix time)",
            ("outcome",),
        )
        self._pending = metrics.gauge(
            "tooltool_indexer_pending_uploads",
            "Uploads pending (posted, not yet verified) after the last pass that listed them",
        )
        self._pending_age = metrics.gauge(
            "tooltool_indexer_pending_age_seconds",
            "Age of the oldest pending upload the last pass read (0: none)",
        )

    def record(
        self, kind: str, seconds: float, outcome: str, report: PassReport | None = None
    ) -> None:
        """A pass of `kind` (``pass``, ``check``, ``rebuild``) ended after `seconds` with
        `outcome` (one of :data:`OUTCOMES`); `report` is an indexer pass's."""
        self._passes.inc((kind, outcome))
        if outcome != "skipped":
            self._seconds.observe((kind,), seconds)
            self._last_seconds.set((), seconds)
        now = self._clock()
        self._last_at.set((outcome,), now)
        if report is not None:
            self._verified.inc((), report.verified_bytes)
            for result in ("indexed", "recorded", "failed", "expired"):
                self._uploads.inc((result,), len(getattr(report, result)))
            if report.pending is not None:
                self._pending.set((), report.pending)
                oldest = report.oldest_pending
                self._pending_age.set((), 0 if oldest is None else max(0.0, now - oldest))
        self.write()

    def write(self) -> None:
        """Write the metrics file, if there is one; a failure is logged, never raised (the
        indexer's work matters more than its metrics)."""
        if self._path is None:
            return
        try:
            self.metrics.write_textfile(self._path)
        except OSError as exc:
            logger.error("cannot write the metrics file %s: %s", self._path, exc.strerror)
