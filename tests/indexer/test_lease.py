"""The indexer's lease: two runs never overlap, a dead holder's lease expires, and a watch
loop holds it one pass at a time."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.cli import EXIT_OK, EXIT_TEMPFAIL, main
from indexer.job import Indexer
from indexer.lease import Lease, LeaseHeld
from indexer.progress import QUIET, terminal_progress
from tests.indexer.test_malformed import cli_environ
from tests.system import System, Uploaded


def test_two_runs_at_once(
    system: System, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = cli_environ(system, request)
    with Lease(system.regions.index, holder="the first run"):
        with pytest.raises(LeaseHeld, match="the first run"):
            Lease(system.regions.index).acquire()
        assert main(["run", "--wait", "0"], environ) == EXIT_TEMPFAIL
        assert main(["rebuild", "--wait", "0.5"], environ) == EXIT_TEMPFAIL
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines()[0].startswith("LeaseHeld: another run holds the indexer lease")
        assert len(err.splitlines()) == 2
    assert main(["run"], environ) == EXIT_OK  # given up at the end: no wait for its expiry


def test_a_held_lease_is_renewed(system: System) -> None:
    with Lease(system.regions.index, seconds=0.6):
        time.sleep(1.5)  # longer than the lease: renewed meanwhile
        with pytest.raises(LeaseHeld):
            Lease(system.regions.index).acquire()


@pytest.fixture
def local_environ(tmp_path: Path) -> dict[str, str]:
    return {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}


def test_a_killed_holder_loses_its_lease_at_expiry(local_environ: dict[str, str]) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from indexer.config import StoreSettings, open_regions\n"
            "from indexer.lease import Lease\n"
            "import os\n"
            "regions = open_regions(StoreSettings.from_environ(os.environ))\n"
            "Lease(regions.index, seconds=2).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        env={**os.environ, **local_environ},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    holder.kill()
    holder.wait()
    holder.stdout.close()
    assert main(["run", "--wait", "0"], local_environ) == EXIT_TEMPFAIL
    deadline = time.monotonic() + 30
    while main(["run", "--wait", "0"], local_environ) != EXIT_OK:
        assert time.monotonic() < deadline, "the dead holder's lease never expired"
        time.sleep(0.2)


def test_a_watch_loop_lets_a_rebuild_take_its_turn(local_environ: dict[str, str]) -> None:
    watch = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", "--interval", "0.2"],
        env={**os.environ, **local_environ},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while main(["rebuild", "--wait", "0"], local_environ) != EXIT_OK:
            assert time.monotonic() < deadline, "the watch loop kept the lease"
            time.sleep(0.05)
    finally:
        watch.terminate()
        watch.wait(timeout=20)


def test_bars_on_a_terminal(system: System) -> None:
    system.upload([Uploaded("a.bin", os.urandom(2048), "public")])
    stream = io.StringIO()
    indexer: Any = Indexer(system.regions, progress=terminal_progress(stream, isatty=lambda: True))
    indexer.run_once()
    shown = stream.getvalue()
    assert "pending uploads" in shown
    assert "2.0 KiB" in shown
    assert "index objects" in shown
    assert terminal_progress(io.StringIO()) is QUIET  # no terminal: no bars


def test_a_run_waits_for_a_pass_to_give_the_lease_up(
    system: System, request: pytest.FixtureRequest
) -> None:
    import threading

    lease = Lease(system.regions.index, holder="a watch loop's pass")
    lease.acquire()
    threading.Timer(0.5, lease.release).start()
    assert main(["run", "--wait", "20"], cli_environ(system, request)) == EXIT_OK


@pytest.mark.parametrize("expires", [b"1e308", b"1e400", b"99999999999", b'"soon"'])
def test_an_impossible_expiry_is_taken_over(system: System, expires: bytes) -> None:
    store = system.regions.index
    store.put("locks/indexer.json", b'{"holder": "x", "token": "t", "expires": ' + expires + b"}")
    with Lease(store):
        pass


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(system: System) -> None:
    store = system.regions.index
    lease = Lease(store, seconds=0.6)
    lease.acquire()
    try:
        raw, _ = store.get("locks/indexer.json")
        store.put("locks/indexer.json", raw + b" ")  # written, but its new ETag never came back
        time.sleep(0.5)  # a renewal: its compare-and-swap fails, the token says it is ours
        with pytest.raises(LeaseHeld):
            Lease(store).acquire()
    finally:
        lease.release()
    with Lease(store):  # given up at the end, as ever
        pass


def test_sigterm_gives_the_lease_up(system: System) -> None:
    import signal

    from indexer.cli import Terminated, terminated_on_sigterm

    store = system.regions.index

    def terminated_while_held() -> None:
        with terminated_on_sigterm(), Lease(store):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted at once

    with pytest.raises(Terminated):
        terminated_while_held()
    with Lease(store):
        pass
