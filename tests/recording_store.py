"""A store that passes every call through to a real one, recording what was asked of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from indexer.stores import StoreUnavailable

RECORDED = ("get", "open", "head", "put", "put_stream", "list", "delete", "copy")
WRITES = ("put", "put_stream", "delete", "copy")


class RecordingStore:
    """Wraps a store; `calls` holds (method, key or prefix) for every call, in order."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.region = store.region
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in RECORDED:
            return attribute

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, str(args[0]) if args else ""))
            return attribute(*args, **kwargs)

        return recorded

    def keys(self, *methods: str) -> list[str]:
        """The keys (or prefixes) of the calls to these methods."""
        return [key for method, key in self.calls if method in methods]

    def writes(self) -> list[str]:
        return self.keys(*WRITES)


@contextmanager
def writes_failing(store: Any, prefix: str) -> Iterator[None]:
    """Within the block, every write of a key under `prefix` raises StoreUnavailable: the
    store down, or a process killed at that write."""
    put = store.put

    def failing(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith(prefix):
            raise StoreUnavailable(store.region, f"writes under {prefix} fail")
        return put(key, *args, **kwargs)

    store.put = failing
    try:
        yield
    finally:
        del store.put  # the class's own again
