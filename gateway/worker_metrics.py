"""Metrics summed over the worker processes of one ``tooltool-gateway --workers N``.

A scrape reaches one worker, picked by the kernel, so each worker publishes
its numbers in a directory the supervisor made (every second, and at exit),
and the worker scraped answers the sum of its own numbers and its peers'
latest: one series per metric, whichever worker answers, at most a second
behind. The files of workers that exited stay, so counters never go back when
uvicorn replaces a worker (what a worker counted in its last second before
dying is lost). Files hold numbers and label values only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from indexer.metrics import Metrics

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0


class SharedMetrics:
    """Publishes this process's metrics in `directory` and merges its peers' into them."""

    def __init__(self, directory: Path, metrics: Metrics, *, pid: int | None = None) -> None:
        self._directory = directory
        self._metrics = metrics
        self._own = directory / f"{os.getpid() if pid is None else pid}.json"
        metrics.merge_peers(self.peers)

    def publish(self) -> None:
        """Write this process's numbers (whole: a temporary file, then a rename)."""
        temporary = self._own.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self._metrics.snapshot()), encoding="utf-8")
            temporary.replace(self._own)
        except OSError as exc:
            logger.error("cannot publish this worker's metrics: %s", exc.strerror)

    def peers(self) -> list[Mapping[str, Any]]:
        """The latest numbers of every other worker (an unreadable file is skipped)."""
        snapshots = []
        for path in sorted(self._directory.glob("*.json")):
            if path == self._own:
                continue
            try:
                snapshots.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # a worker's file being replaced, or gone
        return snapshots

    @contextlib.asynccontextmanager
    async def publishing(self) -> AsyncIterator[None]:
        """Publish every :data:`PUBLISH_INTERVAL` seconds while the app runs, and at its end."""

        async def loop() -> None:
            while True:
                self.publish()
                await asyncio.sleep(PUBLISH_INTERVAL)

        task = asyncio.get_running_loop().create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.publish()
