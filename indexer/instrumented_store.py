"""A store that counts and times every call of the store it wraps.

The seam for store metrics: :func:`instrumented` wraps each region's store
once, where the stores are opened, and no backend knows of metrics. Labels are
the region (configured), the operation (a method of :class:`Store`) and the
outcome (the error's class): never a key.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, TypeVar

from indexer.metrics import Family, Metrics
from indexer.stores import (
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Regions,
    Store,
    StoreError,
    StoreFull,
    StoreUnavailable,
)

T = TypeVar("T")

# The outcome label of a call, by the error it raised (the most specific first).
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (ObjectNotFound, "not_found"),
    (PreconditionFailed, "precondition_failed"),
    (StoreFull, "full"),
    (StoreUnavailable, "unavailable"),
    (StoreError, "error"),
)


class StoreMetrics:
    """The families every instrumented store of a process counts into."""

    def __init__(self, metrics: Metrics) -> None:
        self.calls: Family = metrics.counter(
            "tooltool_store_calls",
            "Store calls by region, operation and outcome (ok, not_found,"
            " precondition_failed, unavailable, full, error, other)",
            ("region", "operation", "outcome"),
        )
        self.seconds: Family = metrics.histogram(
            "tooltool_store_call_duration_seconds",
            "How long store calls took, by region and operation",
            ("region", "operation"),
        )

    def record(self, region: str, operation: str, outcome: str, seconds: float) -> None:
        self.calls.inc((region, operation, outcome))
        self.seconds.observe((region, operation), seconds)


def outcome(exc: BaseException | None) -> str:
    """The outcome label of a call that raised `exc` (None: it succeeded)."""
    if exc is None:
        return "ok"
    for kind, name in _OUTCOMES:
        if isinstance(exc, kind):
            return name
    return "other"


class InstrumentedStore:
    """`store`, every call of the :class:`Store` protocol counted and timed."""

    def __init__(self, store: Store, metrics: StoreMetrics) -> None:
        self.inner = store
        self.region = store.region
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        # What a backend offers beyond the protocol (the local store's paths and signer).
        return getattr(self.inner, name)

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return call()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._metrics.record(
                self.region, operation, outcome(failure), time.perf_counter() - started
            )

    # Keyword options pass through as given: the protocol (indexer.stores.Store) names them.

    def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        return self._call("get", lambda: self.inner.get(key))

    def open(self, key: str, **options: Any) -> AbstractContextManager[BinaryIO]:
        # Timed until the stream is opened: reading it is the caller's pace.
        return self._call("open", lambda: _entered(self.inner.open(key, **options)))

    def head(self, key: str) -> ObjectInfo:
        return self._call("head", lambda: self.inner.head(key))

    def is_versioned(self) -> bool:
        return self.inner.is_versioned()

    def put(self, key: str, data: bytes, **options: Any) -> ObjectInfo:
        return self._call("put", lambda: self.inner.put(key, data, **options))

    def put_stream(self, key: str, stream: BinaryIO, **options: Any) -> None:
        self._call("put_stream", lambda: self.inner.put_stream(key, stream, **options))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Counted once listed to the end (or failed), timed over the whole listing."""
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield from self.inner.list(prefix)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if not isinstance(failure, GeneratorExit):  # a listing left early: not counted
                self._metrics.record(
                    self.region, "list", outcome(failure), time.perf_counter() - started
                )

    def delete(self, key: str, **options: Any) -> None:
        self._call("delete", lambda: self.inner.delete(key, **options))

    def copy(self, source: str, destination: str, **options: Any) -> ObjectInfo:
        return self._call("copy", lambda: self.inner.copy(source, destination, **options))

    def copy_from(self, source: Store, key: str, **options: Any) -> ObjectInfo:
        # The backend sees the other backend (an S3 store copies server-side from another).
        return self._call(
            "copy_from", lambda: self.inner.copy_from(unwrapped(source), key, **options)
        )

    def presign_get(self, key: str, **options: Any) -> str:
        return self._call("presign_get", lambda: self.inner.presign_get(key, **options))

    def presign_put(self, key: str, **options: Any) -> str:
        return self._call("presign_put", lambda: self.inner.presign_put(key, **options))

    def check(self) -> None:
        self._call("check", self.inner.check)


def _entered(manager: AbstractContextManager[BinaryIO]) -> AbstractContextManager[BinaryIO]:
    """`manager`, entered now (where a backend opens the object and raises if it cannot),
    and exited by the caller's ``with``."""
    stack = contextlib.ExitStack()
    stream = stack.enter_context(manager)

    @contextlib.contextmanager
    def held() -> Iterator[BinaryIO]:
        with stack:
            yield stream

    return held()


def unwrapped(store: Store) -> Store:
    """The backend under any instrumentation."""
    while isinstance(store, InstrumentedStore):
        store = store.inner
    return store


def instrumented(regions: Regions, metrics: Metrics) -> Regions:
    """`regions` with every store counted into `metrics`."""
    store_metrics = StoreMetrics(metrics)
    return Regions(InstrumentedStore(unwrapped(store), store_metrics) for store in regions)
