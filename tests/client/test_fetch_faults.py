"""``tooltool fetch`` against a hostile server: wrong bytes, cuts, ignored or wrong
ranges, too many bytes, errors, expired signed URLs, silence, and a killed fetch."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.client.conftest import CliRun
from tests.client.fetch_helpers import (
    Blob,
    assert_fetched,
    reaped,
    run_tooltool,
    sha512_of,
    slow_fetch,
    tooltool_process,
    wait_for,
    write_manifest,
)
from tests.client.hostile_server import SECRET, HostileServer
from tooltool_client import download, manifest
from tooltool_client.api import Server
from tooltool_client.credentials import Anonymous
from tooltool_client.fetch import Fetcher
from tooltool_client.retry import RetryPolicy
from tooltool_client.transport import Transport

TOOL = Blob("tool.bin", os.urandom(300_000))


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A server holding `TOOL`, asked file by file (no batch resolve)."""
    with HostileServer({TOOL.digest: TOOL.data}) as server:
        yield server


def fetch(server: HostileServer, *args: str, **environ: str) -> CliRun:
    outcome = run_tooltool(["-v", "--url", server.url, *args, "fetch"], environ)
    assert "Traceback" not in outcome.stderr
    assert SECRET not in outcome.stderr  # a signed URL's query is a credential
    return outcome


def only_the_tool(folder: Path) -> None:
    assert_fetched(folder, [TOOL], only=True)


def ranges(server: HostileServer) -> list[str | None]:
    return [seen.headers.get("Range") for seen in server.blob_gets()]


def test_wrong_bytes_are_refused_and_never_kept(
    hostile: HostileServer, workdir: Path, tmp_path: Path
) -> None:
    hostile.plan = ["wrong-bytes"] * 10
    write_manifest(workdir, [TOOL])
    cache = tmp_path / "cache"
    outcome = fetch(hostile, "-c", str(cache))
    assert outcome.code == 1
    assert "do not match the manifest's sha512 digest" in outcome.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["manifest.tt"]
    assert list(cache.iterdir()) == []
    assert len(hostile.blob_gets()) == 4  # every round, then it gives up


CUTS = {
    # the second request resumes where the cut left off
    "resumed": (["cut"], [None, "bytes=200000-"]),
    # the server answers 200 and the whole file: the client starts over on that answer
    "range ignored": (["cut", "ignore-range"], [None, "bytes=200000-"]),
    # a 206 from another offset: the part file goes and the next attempt starts afresh
    "wrong Content-Range": (["cut", "wrong-range"], [None, "bytes=200000-", None]),
}


@pytest.mark.parametrize("case", CUTS)
def test_a_cut_transfer(hostile: HostileServer, workdir: Path, case: str) -> None:
    hostile.plan, expected = CUTS[case]
    hostile.cut_at = 200_000
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert ranges(hostile) == expected


def test_a_resumed_transfer_reads_back_nothing_it_wrote(
    hostile: HostileServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut, then a resume: the bytes already in the part file were hashed as they were
    written, so the second attempt does not read them back."""
    opened: list[int] = []
    original = download._open_part

    def recording(path: Path, flags: int) -> BinaryIO:
        opened.append(flags & os.O_ACCMODE)
        return original(path, flags)

    monkeypatch.setattr(download, "_open_part", recording)
    hostile.plan = ["cut"]
    hostile.cut_at = 100_000
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert ranges(hostile) == [None, "bytes=100000-"]
    assert opened == [os.O_RDWR] * 2  # written twice, never read back


def test_more_bytes_than_the_manifest_says_are_refused(
    hostile: HostileServer, workdir: Path
) -> None:
    hostile.plan = ["too-many"] * 10
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 1
    assert f"the server sent more than the manifest's {len(TOOL.data)} bytes" in outcome.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["manifest.tt"]


def test_server_errors_are_retried(hostile: HostileServer, workdir: Path) -> None:
    hostile.locate_plan = ["error"]
    hostile.plan = ["error", "error"]
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert len(hostile.locates()) == 4  # one refused, then one per blob attempt
    assert len(hostile.blob_gets()) == 3


def test_errors_every_time_give_up_in_a_few_rounds(hostile: HostileServer, workdir: Path) -> None:
    hostile.plan = ["error"] * 10
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 1
    assert len(hostile.blob_gets()) == 4
    assert outcome.lines[-2].startswith(f"ERROR - tool.bin: {hostile.url}: ")
    assert outcome.lines[-1] == "ERROR - The following files failed: 'tool.bin'"


def test_an_expired_signed_url_is_located_again(hostile: HostileServer, workdir: Path) -> None:
    hostile.plan = ["expired"]
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile)
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert len(hostile.locates()) == 2
    assert [seen.path for seen in hostile.blob_gets()][-1].endswith(f"{SECRET}-2")


def test_a_silent_server_times_out_and_is_retried(hostile: HostileServer, workdir: Path) -> None:
    hostile.plan = ["hang"]
    write_manifest(workdir, [TOOL])
    outcome = fetch(hostile, TOOLTOOL_READ_TIMEOUT="0.3")
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert "timed out" in outcome.stderr


def test_batch_resolve_replaces_the_per_file_requests(workdir: Path) -> None:
    other = Blob("other.bin", os.urandom(1000))
    blobs = {TOOL.digest: TOOL.data, other.digest: other.data}
    with HostileServer(blobs, has_resolve=True) as server:
        server.plan = ["expired"]  # the resolved URL of one file: located again, alone
        write_manifest(workdir, [TOOL, other])
        outcome = fetch(server, "--jobs", "1")
        assert outcome.code == 0, outcome.stderr
        assert [seen.path for seen in server.seen if seen.method == "POST"] == ["/resolve"]
        assert len(server.locates()) == 1
    assert sha512_of(workdir / "other.bin") == other.digest
    assert sha512_of(workdir / "tool.bin") == TOOL.digest


def test_a_killed_fetch_resumes_from_its_part_file(workdir: Path) -> None:
    with slow_fetch(workdir) as slow:
        slow.process.send_signal(signal.SIGKILL)
        slow.process.communicate(timeout=10)
        kept = slow.part.stat().st_size
        assert 0 < kept < len(slow.blob.data)
        slow.server.delay = 0
        outcome = fetch(slow.server)
        assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [slow.blob], only=True)
    assert ranges(slow.server)[-1] == f"bytes={kept}-"


def fetched_by_hand(server: HostileServer, folder: Path) -> list[float]:
    """`TOOL` fetched into `folder` by a Fetcher of 4 rounds, 1 s apart at first; the
    waits it asked for (no clock involved)."""
    waits: list[float] = []
    transport = Transport()
    fetcher = Fetcher(
        servers=[Server(server.url, Anonymous(), transport)],
        transport=transport,
        directory=folder,
        retry=RetryPolicy(attempts=4, base=1.0),
        sleep=waits.append,
    )
    records = manifest.parse(json.dumps([TOOL.record()]))
    try:
        assert fetcher.fetch(records) == []
    finally:
        transport.close()
    return waits


def test_retries_back_off_doubling(hostile: HostileServer, tmp_path: Path) -> None:
    hostile.plan = ["error"] * 3
    waits = fetched_by_hand(hostile, tmp_path)
    assert len(waits) == 3
    for wait, plain in zip(waits, (1.0, 2.0, 4.0), strict=True):
        assert 0.75 * plain <= wait <= 1.25 * plain  # a quarter of jitter at most
    assert sha512_of(tmp_path / TOOL.name) == TOOL.digest


def test_an_expired_batch_url_is_located_again_at_once(tmp_path: Path) -> None:
    """A batch's signed URLs may expire while earlier files download: no backoff for that."""
    with HostileServer({TOOL.digest: TOOL.data}, has_resolve=True) as server:
        server.plan = ["expired"]
        assert fetched_by_hand(server, tmp_path) == []
        assert len(server.locates()) == 1
    assert sha512_of(tmp_path / TOOL.name) == TOOL.digest


def test_a_failing_batch_resolve_falls_back_to_per_file(workdir: Path) -> None:
    with HostileServer({TOOL.digest: TOOL.data}, has_resolve=True) as server:
        server.resolve_status = 503
        write_manifest(workdir, [TOOL])
        outcome = fetch(server)
        assert outcome.code == 0, outcome.stderr
        assert len(server.locates()) == 1
    assert "could not resolve the manifest (503: " in outcome.stderr
    only_the_tool(workdir)


def test_a_bad_wait_setting_is_one_line(workdir: Path) -> None:
    write_manifest(workdir, [TOOL])
    outcome = run_tooltool(
        ["--url", "http://127.0.0.1:9/", "fetch"], {"TOOLTOOL_RETRY_SECONDS": "x"}
    )
    assert outcome.code == 1
    assert outcome.lines == [
        "ERROR - TOOLTOOL_RETRY_SECONDS must be a positive number of seconds, not 'x'"
    ]


def test_the_console_script_fails_in_one_line_per_file(workdir: Path) -> None:
    with HostileServer({}) as server:
        write_manifest(workdir, [TOOL])
        process = tooltool_process(["--url", server.url, "fetch"], workdir)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [
        f"ERROR - tool.bin: {server.url}: 404: Not Found",
        "ERROR - The following files failed: 'tool.bin'",
    ]


def test_a_server_answering_the_bytes_itself(workdir: Path) -> None:
    """No redirect: ``GET sha512/<digest>`` answers 200 and the file (a plain mirror)."""
    large = Blob("large.bin", os.urandom(5 * 1024 * 1024))
    with HostileServer({large.digest: large.data}) as server:
        server.direct = True
        write_manifest(workdir, [large])
        outcome = fetch(server)
        assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [large], only=True)


def test_an_interrupted_fetch_stops_in_one_line_and_keeps_its_part_file(workdir: Path) -> None:
    with slow_fetch(workdir) as slow:
        slow.process.send_signal(signal.SIGINT)
        _, err = slow.process.communicate(timeout=30)
    assert slow.process.returncode == 130
    assert err.splitlines()[-1] == (
        "ERROR - interrupted; a fetch resumes where it stopped when run again"
    )
    assert "Traceback" not in err
    assert 0 < slow.part.stat().st_size < len(slow.blob.data)


def test_a_blob_url_that_redirects_is_followed_without_credentials(
    hostile: HostileServer, workdir: Path
) -> None:
    """As the legacy client did; the Authorization header stays with the server."""
    hostile.plan, hostile.cut_at = ["cut", "redirect", "redirect"], 100_000
    write_manifest(workdir, [TOOL])
    credentials = {"TASKCLUSTER_CLIENT_ID": "reader", "TASKCLUSTER_ACCESS_TOKEN": "secret"}
    outcome = fetch(hostile, **credentials)
    assert outcome.code == 0, outcome.stderr
    only_the_tool(workdir)
    assert ranges(hostile) == [None, "bytes=100000-", "bytes=100000-", "bytes=100000-"]
    assert len(hostile.locates()) == 2  # the first, then one after the cut: redirects followed
    assert all("Authorization" in seen.headers for seen in hostile.locates())
    assert not any("Authorization" in seen.headers for seen in hostile.blob_gets())


@pytest.mark.parametrize("error", [-1000, 1000])
def test_a_file_of_another_size_than_the_manifests(
    hostile: HostileServer, workdir: Path, error: int
) -> None:
    write_manifest(workdir, [{**TOOL.record(), "size": len(TOOL.data) + error}])
    outcome = fetch(hostile)
    assert outcome.code == 1
    assert outcome.lines[-2] == (
        f"ERROR - tool.bin: {hostile.url}: the server's file is {len(TOOL.data)} bytes,"
        f" the manifest says {len(TOOL.data) + error}"
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["manifest.tt"]
    assert len(hostile.blob_gets()) == 1  # final for that server: asking again changes nothing


def test_an_interrupted_fetch_does_not_wait_for_a_silent_server(
    hostile: HostileServer, workdir: Path
) -> None:
    """Ctrl-C ends reads under way at once, not after the read timeout (a minute here)."""
    hostile.plan = ["hang"]
    write_manifest(workdir, [TOOL])
    command = ["--url", hostile.url, "fetch"]
    slow_reads = {"TOOLTOOL_READ_TIMEOUT": "60"}
    with reaped(tooltool_process(command, workdir, environ=slow_reads)) as process:
        wait_for(hostile.blob_gets, process, "request for the blob")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert len(hostile.blob_gets()) == 1  # not retried once interrupted
