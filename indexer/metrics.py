"""Prometheus metrics kept as plain numbers, exposed through ``prometheus_client``.

Each metric is a dict from a tuple of label values to a number (a histogram: to a
list of bucket counts ending with the sum), updated with no label lookup of
``prometheus_client``'s: the gateway's fast path bumps a list it was handed once,
and :class:`Metrics` (a ``prometheus_client`` collector) reads the numbers only
when scraped. Label values are the code's own (route templates, regions,
outcomes), never a caller's text: every metric's cardinality is bounded.

A snapshot (:meth:`Metrics.snapshot`) is the numbers as JSON, so that the worker
processes of one gateway can sum theirs (:func:`merged`): counters and
histograms add up, a gauge takes the value set last.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first scraped: a gateway worker starts sooner without it
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

# Seconds: from a cached download's tens of microseconds to an indexer pass's minutes.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

Labels = tuple[str, ...]


class Family:
    """One metric: its name, help, label names and values by label values."""

    __slots__ = ("buckets", "help", "kind", "labels", "lock", "name", "set_at", "values")

    def __init__(
        self,
        kind: str,
        name: str,
        help: str,
        labels: Iterable[str] = (),
        *,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.kind = kind
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.buckets = buckets
        # Counters and gauges: a number; histograms: bucket counts (one more than the
        # bounds: the last is +Inf's own), then the sum.
        self.values: dict[Labels, Any] = {}
        # A gauge's values: when each was set (wall clock), so that of several
        # processes' values the latest wins (:func:`merged`).
        self.set_at: dict[Labels, float] = {}
        self.lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        """Add to a counter (from any thread)."""
        with self.lock:
            self.values[labels] = self.values.get(labels, 0) + amount

    def set(self, labels: Labels, value: float) -> None:
        """Set a gauge."""
        self.values[labels] = value
        self.set_at[labels] = time.time()

    def slot(self, labels: Labels) -> list[float]:
        """A histogram's bucket counts and sum for `labels`, to update in place from one
        thread (:func:`observe_into`); made on first use."""
        slot = self.values.get(labels)
        if slot is None:
            with self.lock:
                slot = self.values.setdefault(labels, [0.0] * (len(self.buckets) + 2))
        return slot

    def observe(self, labels: Labels, value: float) -> None:
        """Count one observation in a histogram (from any thread)."""
        slot = self.slot(labels)
        with self.lock:
            observe_into(slot, self.buckets, value)

    def family(self) -> Metric:
        """The ``prometheus_client`` family of the current values."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        items = sorted(self.values.items())
        if self.kind == HISTOGRAM:
            histogram = HistogramMetricFamily(self.name, self.help, labels=self.labels)
            bounds = [*map(_bound, self.buckets), "+Inf"]
            for labels, slot in items:
                cumulative, total = [], 0.0
                for bound, count in zip(bounds, slot[:-1], strict=True):
                    total += count
                    cumulative.append((bound, total))
                histogram.add_metric(list(labels), cumulative, slot[-1])
            return histogram
        kind = CounterMetricFamily if self.kind == COUNTER else GaugeMetricFamily
        metric = kind(self.name, self.help, labels=self.labels)
        for labels, value in items:
            metric.add_metric(list(labels), value)
        return metric


def observe_into(slot: list[float], buckets: tuple[float, ...], value: float) -> None:
    """Count `value` in a histogram slot (:meth:`Family.slot`)."""
    slot[bisect.bisect_left(buckets, value)] += 1
    slot[-1] += value


class Metrics:
    """Every metric of one process, as one ``prometheus_client`` collector.

    `sources` are called before each collection (and snapshot) to bring numbers kept
    elsewhere (a cache's hit count, say) into their families.
    """

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}
        self._sources: list[Callable[[], None]] = []
        self._peers: Callable[[], Iterable[Mapping[str, Any]]] | None = None
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """A ``prometheus_client`` registry of these metrics alone."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)
        return self._registry

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Family:
        return self._add(Family(COUNTER, name, help, labels))

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Family:
        return self._add(Family(GAUGE, name, help, labels))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Iterable[str] = (),
        *,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Family:
        return self._add(Family(HISTOGRAM, name, help, labels, buckets=buckets))

    def _add(self, family: Family) -> Family:
        existing = self._families.get(family.name)
        if existing is not None:  # one family per name, however many parts ask for it
            return existing
        self._families[family.name] = family
        return family

    def add_source(self, source: Callable[[], None]) -> None:
        """Call `source` before every collection, to update its families."""
        self._sources.append(source)

    def merge_peers(self, peers: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        """Add the snapshots `peers` returns (other processes') to every collection."""
        self._peers = peers

    def collect(self) -> Iterator[Metric]:
        if self._peers is None:
            self._refresh()
            for name in sorted(self._families):
                yield self._families[name].family()
            return
        combined = merged([self.snapshot(), *self._peers()])
        yield from from_snapshot(combined, self._families)

    def _refresh(self) -> None:
        for source in self._sources:
            source()

    def snapshot(self) -> dict[str, Any]:
        """The current values as JSON-able data (label values and numbers)."""
        self._refresh()
        return {
            name: {
                "kind": family.kind,
                "values": [
                    [list(labels), value, family.set_at.get(labels, 0.0)]
                    for labels, value in list(family.values.items())
                ],
            }
            for name, family in self._families.items()
        }

    def exposition(self) -> bytes:
        """The text format a scrape gets."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """Write the text format to `path` atomically (node_exporter's textfile collector)."""
        from prometheus_client import write_to_textfile

        write_to_textfile(str(path), self.registry)


def merged(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, dict[Labels, Any]]:
    """The sum of several processes' snapshots; of a gauge's values, the one set last."""
    total: dict[str, dict[Labels, Any]] = {}
    set_at: dict[tuple[str, Labels], float] = {}  # when each gauge value kept was set
    for snapshot in snapshots:
        for name, metric in snapshot.items():
            values = total.setdefault(name, {})
            is_gauge = metric["kind"] == GAUGE
            for labels, value, *when in metric["values"]:
                key = tuple(labels)
                known = values.get(key)
                if is_gauge:
                    moment = float(when[0]) if when else 0.0
                    if known is None or moment >= set_at[name, key]:
                        values[key], set_at[name, key] = value, moment
                elif known is None:
                    values[key] = list(value) if isinstance(value, list) else value
                elif isinstance(value, list):
                    values[key] = [a + b for a, b in zip(known, value, strict=True)]
                else:
                    values[key] = known + value
    return total


def from_snapshot(
    combined: Mapping[str, Mapping[Labels, Any]], families: Mapping[str, Family]
) -> Iterator[Metric]:
    """The families of `families`' names and kinds, with the values of `combined`."""
    for name in sorted(families):
        own = families[name]
        copy = Family(own.kind, own.name, own.help, own.labels, buckets=own.buckets)
        copy.values.update(combined.get(name, {}))
        yield copy.family()


def _bound(value: float) -> str:
    return repr(float(value))
