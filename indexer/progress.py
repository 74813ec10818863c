"""Progress of a long job: a bar per phase on a terminal (objects and bytes), nothing else.

The indexer's loops report through a :class:`Progress`; the command line
gives them :func:`terminal_progress` when stderr is a terminal and
:data:`QUIET` otherwise (cron, Kubernetes and Taskcluster logs get the one
JSON summary line instead of redrawn bars).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol, TextIO

from tqdm import tqdm


class Phase(Protocol):
    def advance(self, objects: int = 1, size: int = 0) -> None:
        """Count `objects` more done, of `size` bytes in all."""


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None) -> AbstractContextManager[Phase]:
        """A phase of the job, of `total` objects when known."""


class _Silent:
    def advance(self, objects: int = 1, size: int = 0) -> None:
        pass


class _Quiet:
    def phase(self, name: str, total: int | None = None) -> AbstractContextManager[Phase]:
        return nullcontext(_Silent())


QUIET: Progress = _Quiet()


class _Bar:
    """One phase's bar: objects counted, bytes in the postfix."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._bytes = 0

    def advance(self, objects: int = 1, size: int = 0) -> None:
        self._bytes += size
        if size:
            self._bar.set_postfix_str(_human(self._bytes), refresh=False)
        self._bar.update(objects)


class _Bars:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def phase(self, name: str, total: int | None = None) -> AbstractContextManager[Phase]:
        bar = tqdm(
            desc=name, total=total, unit=" objects", file=self._stream, leave=True, mininterval=0.2
        )
        return _Closing(bar)


class _Closing:
    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def __enter__(self) -> Phase:
        return _Bar(self._bar)

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def terminal_progress(
    stream: TextIO | None = None, *, isatty: Callable[[], bool] | None = None
) -> Progress:
    """Bars on `stream` (stderr) when it is a terminal, else nothing."""
    stream = stream if stream is not None else sys.stderr
    is_terminal = isatty() if isatty is not None else stream.isatty()
    return _Bars(stream) if is_terminal else QUIET


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
