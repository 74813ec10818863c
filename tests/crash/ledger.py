"""What the crash loop's clients sent, and so what the store must show.

Shared by the uploader, the patcher and the watcher (threads): every change
is made under one lock, and readers take snapshots.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

RIGHT = "right"  # the declared bytes were PUT
WRONG = "wrong"  # other bytes of the declared size were PUT: never downloadable
REPLACED = "replaced"  # the declared bytes, then other bytes on the same URL: either


@dataclass
class File:
    """One file the uploader declared, and what happened to it since."""

    data: bytes
    visibility: str  # as uploaded, then as the last PATCH answered 200 made it
    kind: str
    maybe_public: bool  # uploaded public, or a PATCH to public was sent (answered or not)
    deleted: bool = False  # a PATCH deleting it was answered 200
    # Posted again (it may then be uploaded again, restoring it after a deletion), or
    # about to be deleted: never both, so what a file must show at the end is known.
    posted_again: bool = False
    deleting: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha512(self.data).hexdigest()


@dataclass
class Ledger:
    """Every file declared, by digest; counts of what each actor did; what went wrong."""

    files: dict[str, File] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, file: File) -> None:
        with self._lock:
            self.files[file.digest] = file

    def snapshot(self) -> list[File]:
        with self._lock:
            return list(self.files.values())

    def count(self, what: str, number: int = 1) -> None:
        with self._lock:
            self.counts[what] += number

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def to_post_again(self, rng: random.Random) -> File | None:
        """A file stored with the right bytes, now marked as posted again (never deleted)."""
        with self._lock:
            known = [f for f in self.files.values() if f.kind == RIGHT and not f.deleting]
            if not known:
                return None
            file = rng.choice(known)
            file.posted_again = True
            return file

    def to_delete(self, file: File) -> bool:
        """Mark `file` as being deleted, unless it was posted again."""
        with self._lock:
            if file.posted_again:
                return False
            file.deleting = True
            return True

    def may_go_public(self, file: File) -> None:
        with self._lock:
            file.maybe_public = True

    def patched(self, file: File, *, visibility: str | None = None, deleted: bool = False) -> None:
        with self._lock:
            if visibility is not None:
                file.visibility = visibility
            file.deleted = file.deleted or deleted
