"""What a fetch shows: on a terminal, a progress bar (bytes, rate, files); elsewhere (CI
logs), one line per file and nothing that redraws."""

from __future__ import annotations

import logging
import threading
from typing import IO, TYPE_CHECKING, Never, Protocol

if TYPE_CHECKING:
    from tqdm import tqdm

logger = logging.getLogger("tooltool")


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def finished(self, filename: str, how: str) -> None: ...
    def close(self) -> None: ...


class LogLines:
    """One log line per file: for logs that are read later."""

    def start(self, files: int, total_bytes: int) -> None:
        if files:
            logger.info("fetching %d file(s), %s", files, human_bytes(total_bytes))

    def advance(self, count: int) -> None:
        pass

    def finished(self, filename: str, how: str) -> None:
        logger.info("%s: %s", filename, how)

    def close(self) -> None:
        pass


class Bar:
    """A tqdm bar of bytes with the files done beside it (written to `stream`)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._bar: tqdm[Never] | None = None
        self._files = 0
        self._done = 0

    def start(self, files: int, total_bytes: int) -> None:
        from tqdm import tqdm  # here: runs without a terminal never pay for importing it

        self._files = files
        self._bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self._stream,
            dynamic_ncols=True,
            desc=f"0/{files} files",
            leave=True,
        )

    def advance(self, count: int) -> None:
        bar = self._bar
        if bar is not None:
            with self._lock:
                bar.update(count)

    def finished(self, filename: str, how: str) -> None:
        bar = self._bar
        with self._lock:
            self._done += 1
            if bar is not None:
                bar.set_description(f"{self._done}/{self._files} files")
                bar.write(f"{filename}: {how}", file=self._stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
