"""A malformed object is set aside, logged and counted; the pass and the watch loop go on.

Regression (review finding 9): one malformed index object made ``run`` exit 1
with a traceback, ``watch`` on S3 exit 9 s after the object was corrupted (so
no later upload was verified), and ``run --no-check`` abort when a pending
record named the same digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.cli import EXIT_OK, EXIT_PARTIAL, main
from indexer.local_store import LocalStore
from indexer.schema import index_key
from tests.conftest import SeaweedFS
from tests.system import System, Uploaded


def cli_environ(system: System, request: pytest.FixtureRequest) -> dict[str, str]:
    store: Any = system.regions.index
    if isinstance(store, LocalStore):
        return {"TOOLTOOL_DATA_DIR": str(store.root)}
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    return seaweedfs.environ((store.region, store.bucket))


def posted(system: System, name: str) -> Uploaded:
    upload = Uploaded(name, os.urandom(200), "public")
    system.upload([upload])
    return upload


def corrupt(system: System, digest: str) -> None:
    system.regions.index.put(index_key(digest), b'{"schema_version": 1, "digest": "nope"')


@pytest.mark.parametrize("check", [True, False], ids=["run", "run --no-check"])
def test_run_sets_a_malformed_object_aside_and_does_the_rest(
    system: System,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    check: bool,
) -> None:
    environ = cli_environ(system, request)
    broken, fine = posted(system, "broken.bin"), posted(system, "fine.bin")
    corrupt(system, broken.digest)
    argv = ["run"] if check else ["run", "--no-check"]
    assert main(argv, environ) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["indexed"] == 1
    assert summary["malformed"] >= 1
    assert index_key(broken.digest) in err
    assert "Traceback" not in err
    assert system.download(fine.digest)[0] == 302
    # Set aside, untouched: never trusted, never overwritten.
    assert system.regions.index.get(index_key(broken.digest))[0].startswith(b'{"schema_version"')
    assert system.download(broken.digest)[0] == 500
    # Once an operator removes it, the waiting upload is verified and indexed.
    system.regions.index.delete(index_key(broken.digest))
    assert main(argv, environ) == EXIT_OK
    capsys.readouterr()
    assert system.download(broken.digest) == (302, broken.data)


def test_an_unreadable_pending_record_is_counted(
    system: System, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = cli_environ(system, request)
    fine = posted(system, "fine.bin")
    key = "intake/pending/" + "0" * 32 + "/1/" + "a" * 128 + ".json"
    system.regions.index.put(key, b"not json")
    assert main(["run", "--no-check"], environ) == EXIT_PARTIAL
    assert json.loads(capsys.readouterr().out)["malformed"] == 1
    assert system.download(fine.digest)[0] == 302


def test_watch_outlives_a_malformed_object(
    system: System, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    environ = cli_environ(system, request)
    broken = posted(system, "broken.bin")
    corrupt(system, broken.digest)
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", "--interval", "0.2"],
        env={**os.environ, **environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        late = posted(system, "late.bin")  # posted after the corruption
        deadline = time.monotonic() + 30
        while system.download(late.digest)[0] != 302:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "watch did not index the later upload"
            time.sleep(0.2)
        time.sleep(1)  # a few more passes over the malformed object
        assert process.poll() is None
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert "INFO indexer.cli: watching " in err.splitlines()[0]
    assert index_key(broken.digest) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "changes",
    [
        {"filenames": []},
        {"created": 1e300},
        {"created": -1e18},
        {"visibility": "secret"},
        {"batch_id": 0},
        {"size": -1},
        {"filenames": ["x" * 2000]},
        {"put_url_expires": "soon"},
        {"put_url_expires": True},
        {"put_url_expires": -1},
    ],
    ids=lambda changes: str(changes)[:30],
)
def test_a_pending_record_with_bad_values_is_set_aside(
    system: System, request: pytest.FixtureRequest, changes: dict[str, Any]
) -> None:
    """A record no gateway wrote (by hand, or damaged) stops nobody else's upload."""
    fine = posted(system, "fine.bin")
    [info] = list(system.regions.index.list("intake/pending/"))
    posted(system, "odd.bin")
    [odd_info] = [i for i in system.regions.index.list("intake/pending/") if i.key != info.key]
    record = json.loads(system.regions.index.get(odd_info.key)[0]) | changes
    system.regions.index.put(odd_info.key, json.dumps(record).encode())
    report = system.indexer.run_once(check=False)
    assert report.malformed == [odd_info.key]
    assert system.download(fine.digest)[0] == 302


def test_an_uploader_with_a_very_long_client_id_is_indexed(system: System) -> None:
    """Client ids have no length limit; an index object's author has one (1024)."""
    from dataclasses import replace

    from indexer.index import read_index
    from indexer.intake import Pending

    upload = posted(system, "a.bin")
    [info] = list(system.regions.index.list("intake/pending/"))
    pending = Pending.from_json(system.regions.index.get(info.key)[0], key=info.key)
    system.regions.index.delete(info.key)
    long = replace(pending, author="L" * 1100)
    system.regions.index.put(long.key, long.to_json())
    system.indexer.run_once(check=False)
    assert system.download(upload.digest)[0] == 302
    found = read_index(system.regions.index, upload.digest)
    assert found is not None
    assert found[0].uploads[0].author == "L" * 1024
