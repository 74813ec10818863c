"""Store calls counted at the seam, and the indexer's passes written for node_exporter."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from indexer.cli import EXIT_OK, main
from indexer.instrumented_store import InstrumentedStore, StoreMetrics, instrumented, unwrapped
from indexer.job import PassReport
from indexer.local_store import LocalStore
from indexer.metrics import Metrics, merged
from indexer.pass_metrics import PassMetrics
from indexer.stores import ObjectNotFound, PreconditionFailed, Regions
from tests.conftest import make_local_store, make_system
from tests.system import Uploaded


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def calls(metrics: Metrics, operation: str, outcome: str, region: str = "local") -> float:
    found = samples(metrics.exposition().decode())
    labels = (("operation", operation), ("outcome", outcome), ("region", region))
    return found.get(("tooltool_store_calls_total", labels), 0.0)


def test_every_call_is_counted_by_region_operation_and_outcome(tmp_path: Path) -> None:
    metrics = Metrics()
    store = InstrumentedStore(make_local_store(tmp_path / "data"), StoreMetrics(metrics))
    store.put("a/b", b"x", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("a/b", b"y", if_none_match=True)
    with pytest.raises(ObjectNotFound):
        store.get("a/missing")
    with pytest.raises(ObjectNotFound):
        store.open("a/missing")
    with store.open("a/b") as stream:
        assert stream.read() == b"x"
    assert [info.key for info in store.list("a/")] == ["a/b"]
    next(iter(store.list("a/")))  # left early: not counted
    assert calls(metrics, "put", "ok") == 1
    assert calls(metrics, "put", "precondition_failed") == 1
    assert calls(metrics, "get", "not_found") == 1
    assert calls(metrics, "open", "not_found") == 1
    assert calls(metrics, "open", "ok") == 1
    assert calls(metrics, "list", "ok") == 1
    # What a backend offers beyond the protocol is still there (the local store's paths).
    assert store.path("a/b") == unwrapped(store).path("a/b")  # type: ignore[attr-defined]
    text = metrics.exposition().decode()
    assert "a/b" not in text
    assert "missing" not in text


def test_a_copy_between_regions_reaches_the_backends(tmp_path: Path) -> None:
    metrics = Metrics()
    east, west = (
        make_local_store(tmp_path / "east", region="east"),
        make_local_store(tmp_path / "west", region="west"),
    )
    regions = instrumented(instrumented(Regions([east, west]), metrics), metrics)
    assert unwrapped(regions["east"]) is east  # wrapped once, however often instrumented
    regions["east"].put("sha512/x", b"bytes")
    regions["west"].copy_from(regions["east"], "sha512/x")
    assert west.get("sha512/x")[0] == b"bytes"
    assert calls(metrics, "copy_from", "ok", region="west") == 1
    assert isinstance(unwrapped(regions["west"]), LocalStore)


def test_snapshots_of_workers_add_up() -> None:
    first, second = Metrics(), Metrics()
    for metrics, count, age in ((first, 2, 5.0), (second, 3, 9.0)):
        metrics.counter("c", "a counter", ("kind",)).inc(("x",), count)
        metrics.gauge("g", "a gauge").set((), age)
        metrics.histogram("h", "a histogram", buckets=(1.0,)).observe((), 0.5)
    total = merged([first.snapshot(), second.snapshot()])
    assert total["c"] == {("x",): 5}
    assert total["g"] == {(): 9.0}  # gauges: the one set last
    assert total["h"] == {(): [2.0, 0.0, 1.0]}  # one bucket, +Inf's own, the sum


def test_of_workers_gauges_the_value_set_last_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's old pass left 7 uploads pending; another's later pass left none."""
    old, new = Metrics(), Metrics()
    monkeypatch.setattr("indexer.metrics.time.time", lambda: 100.0)
    old.gauge("pending", "pending uploads").set((), 7.0)
    monkeypatch.setattr("indexer.metrics.time.time", lambda: 200.0)
    new.gauge("pending", "pending uploads").set((), 0.0)
    for order in ([old, new], [new, old]):
        assert merged([m.snapshot() for m in order])["pending"] == {(): 0.0}


def test_run_writes_its_pass_to_the_metrics_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_local_store(tmp_path / "data")
    system = make_system(store, tmp_path)
    waiting = Uploaded("waiting.bin", os.urandom(100), "public")
    assert system.post([waiting]).status_code == 200  # posted, never PUT: pending
    path = tmp_path / "metrics" / "indexer.prom"
    path.parent.mkdir()
    environ = {"TOOLTOOL_DATA_DIR": str(store.root), "TOOLTOOL_METRICS_FILE": str(path)}
    assert main(["run"], environ) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    found = samples(path.read_text())
    assert found[("tooltool_indexer_passes_total", (("kind", "check"), ("outcome", "complete")))]
    assert found[("tooltool_indexer_pass_duration_seconds_count", (("kind", "check"),))] == 1
    assert found[("tooltool_indexer_pending_uploads", ())] == 1
    assert 0 <= found[("tooltool_indexer_pending_age_seconds", ())] < 60
    assert found[("tooltool_indexer_verified_bytes_total", ())] == summary["verified_bytes"] == 0
    at = found[("tooltool_indexer_last_pass_timestamp_seconds", (("outcome", "complete"),))]
    assert abs(at - time.time()) < 60
    listed = (("operation", "list"), ("outcome", "ok"), ("region", "local"))
    assert found[("tooltool_store_calls_total", listed)] >= 1
    assert waiting.digest not in path.read_text()
    assert not list(path.parent.glob("*.tmp*"))  # written whole, then renamed
    # --metrics-file wins over the setting; a directory that is not there is a setting error.
    other = tmp_path / "metrics" / "other.prom"
    assert main(["run", "--no-check", "--metrics-file", str(other)], environ) == EXIT_OK
    assert ("tooltool_indexer_passes_total", (("kind", "pass"), ("outcome", "complete"))) in (
        samples(other.read_text())
    )
    missing = {**environ, "TOOLTOOL_METRICS_FILE": str(tmp_path / "nowhere" / "x.prom")}
    assert main(["run"], missing) == 4
    assert "TOOLTOOL_METRICS_FILE" in capsys.readouterr().err


def test_pending_age_is_the_oldest_unfinished_uploads(tmp_path: Path) -> None:
    system = make_system(make_local_store(tmp_path / "data"), tmp_path)
    system.post([Uploaded("old.bin", os.urandom(100), "public")])
    done = Uploaded("done.bin", os.urandom(100), "public")
    system.upload([done])
    report: Any = system.indexer.run_once(check=True)
    assert isinstance(report, PassReport)
    assert report.indexed == [done.digest]
    assert report.pending == 1
    metrics = Metrics()
    assert report.oldest_pending is not None
    PassMetrics(metrics, clock=lambda: report.oldest_pending + 3600).record(
        "check", 1.5, "complete", report
    )
    found = samples(metrics.exposition().decode())
    assert found[("tooltool_indexer_pending_age_seconds", ())] == 3600
    assert found[("tooltool_indexer_uploads_total", (("result", "indexed"),))] == 1
    assert found[("tooltool_indexer_verified_bytes_total", ())] == 100
    assert found[("tooltool_indexer_last_pass_duration_seconds", ())] == 1.5
