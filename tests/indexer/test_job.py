"""The indexer job's consistency check, determinism and CLI, on both stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.catalog import BATCHES_KEY, FILES_KEY
from indexer.cli import main
from indexer.index import read_index
from indexer.schema import blob_key
from tests.system import System, Uploaded


def test_missing_blobs_are_dropped_from_the_index(system: System) -> None:
    upload = Uploaded("a.bin", os.urandom(100), "public")
    system.upload([upload])
    system.indexer.run_once()
    system.regions.index.delete(blob_key(upload.digest))
    report = system.indexer.run_once()
    assert report.repaired == [upload.digest]
    index, _ = read_index(system.regions.index, upload.digest)
    assert index.instances == ()
    assert system.download(upload.digest)[0] == 404
    assert system.client.get(f"/file/sha512/{upload.digest}").json()["has_instances"] is False


def test_orphaned_staging_is_removed(system: System) -> None:
    system.regions.index.put("staging/" + "a" * 128 + "/orphan", b"left behind")
    assert system.indexer.run_once().removed_staging == 1
    assert list(system.regions.index.list("staging/")) == []


def test_a_rerun_writes_nothing_new(system: System) -> None:
    system.upload(
        [Uploaded("a.bin", os.urandom(10), "public"), Uploaded("b.bin", os.urandom(10), "internal")]
    )
    system.indexer.run_once()
    store = system.regions.index
    before = {info.key: info.etag for info in store.list("")}
    system.indexer.run_once()
    assert {info.key: info.etag for info in store.list("")} == before
    files = json.loads(store.get(FILES_KEY)[0])["files"]
    assert [entry["filenames"] for entry in files] in (
        [["a.bin"], ["b.bin"]],
        [["b.bin"], ["a.bin"]],
    )
    assert [entry["digest"] for entry in files] == sorted(entry["digest"] for entry in files)
    assert len(json.loads(store.get(BATCHES_KEY)[0])["batches"]) == 1


def test_a_pass_without_check_updates_the_catalog(system: System) -> None:
    upload = Uploaded("quick.bin", os.urandom(10), "public")
    system.upload([upload])
    system.indexer.run_once(check=False)
    files = json.loads(system.regions.index.get(FILES_KEY)[0])["files"]
    assert [entry["digest"] for entry in files] == [upload.digest]


@pytest.fixture
def local_environ(tmp_path: Path) -> dict[str, str]:
    return {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}


def test_cli_run_and_failures(local_environ: dict[str, str], tmp_path: Path, capsys) -> None:
    from indexer.config import StoreSettings, open_regions
    from indexer.intake import Pending

    regions = open_regions(StoreSettings.from_environ(local_environ))
    store = regions.index
    pending = Pending(
        digest="a" * 128,
        size=3,
        visibility="public",
        batch_id=1,
        filename="x",
        author="me",
        message="m",
        uploaded="2026-11-29T00:00:00Z",
        region="local",
        staging_key="staging/" + "a" * 128 + "/k",
        created=0,
    )
    store.put(pending.key, pending.to_json())
    store.put(pending.staging_key, b"bad")
    assert main(["run"], local_environ) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 1
    assert main(["failures"], local_environ) == 0
    failure = json.loads(capsys.readouterr().out)
    assert failure["digest"] == "a" * 128
    assert failure["reason"].startswith("sha512 mismatch")


def test_cli_watch_runs_until_interrupted(local_environ: dict[str, str], tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", "--interval", "0.2"],
        env={**os.environ, **local_environ},
        stderr=subprocess.PIPE,
        text=True,
    )
    catalog = Path(local_environ["TOOLTOOL_DATA_DIR"]) / "catalog" / "files.json"
    deadline = time.monotonic() + 20
    while not catalog.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert catalog.exists()
    assert process.returncode == 0
    assert "Traceback" not in stderr
