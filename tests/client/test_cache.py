"""The shared cache (``--cache-folder``): one download per file among processes sharing
it, entries verified on every use, and a fetch that goes on when the cache cannot be used."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.client.fetch_helpers import (
    Blob,
    FetchGateway,
    assert_fetched,
    reaped,
    run_tooltool,
    sha512_of,
    slow_fetch,
    tooltool_process,
    wait_for_output,
    write_manifest,
)
from tests.client.hostile_server import HostileServer
from tooltool_client.cache import place

BLOBS = [Blob("a.bin", os.urandom(400_000)), Blob("b.bin", os.urandom(200_000)), Blob("c", b"c")]


def test_processes_sharing_a_cache_download_each_file_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folders = [tmp_path / f"job{n}" for n in range(4)]
    with HostileServer({blob.digest: blob.data for blob in BLOBS}) as server:
        server.plan, server.delay = ["slow"] * 12, 0.03  # slow enough for the fetches to meet
        processes = []
        for folder in folders:
            folder.mkdir()
            write_manifest(folder, BLOBS)
            command = ["--url", server.url, "-c", str(cache), "fetch"]
            processes.append(tooltool_process(command, folder))
        outputs = [process.communicate(timeout=60) for process in processes]
        for process, (_, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err
        fetched = [seen.path.split("?")[0] for seen in server.blob_gets()]
    assert sorted(fetched) == sorted(f"/blobs/{blob.digest}" for blob in BLOBS)
    for folder in folders:
        assert_fetched(folder, BLOBS, only=True)
    assert sorted(p.name for p in cache.iterdir()) == sorted(blob.digest for blob in BLOBS)


@pytest.mark.parametrize("changed", ["cache entry", "working file"])
def test_changed_bytes_in_the_cache_are_not_used(
    fetch_gateway: FetchGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: str
) -> None:
    """A cache entry is hard-linked into the working folder: bytes changed in place through
    either name are found on the next use; the entry is removed and fetched again."""
    blob = fetch_gateway.files["medium.bin"]
    cache = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        write_manifest(folder, [blob])
    monkeypatch.chdir(first)
    assert run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"]).code == 0
    changed_path = cache / blob.digest if changed == "cache entry" else first / blob.name
    with open(changed_path, "r+b") as stream:
        stream.write(b"poison")
    fetch_gateway.proxy.reset()
    for folder in (second, first):
        monkeypatch.chdir(folder)
        outcome = run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"])
        assert outcome.code == 0, outcome.stderr
        assert_fetched(folder, [blob], only=True)
    assert hashlib.sha512((cache / blob.digest).read_bytes()).hexdigest() == blob.digest
    # Asked for once (by batch resolve, or file by file), by the fetch that found it changed.
    asked = fetch_gateway.proxy.paths("POST", "/resolve") + fetch_gateway.proxy.paths(
        "GET", f"/sha512/{blob.digest}"
    )
    assert len(asked) == 1


def test_a_cache_that_cannot_be_created_is_done_without(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    (workdir.parent / "file").write_text("not a folder")
    cache = workdir.parent / "file" / "cache"
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public, only=True)
    warnings = [line for line in outcome.lines if line.startswith("WARNING - ")]
    assert warnings == [
        f"WARNING - cache folder '{cache}' cannot be used (cannot be created: Not a directory):"
        " fetching without it"
    ]


def test_a_cache_that_cannot_be_written_is_done_without(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    blob = fetch_gateway.files["small.bin"]
    cache = workdir.parent / "cache"
    (cache / f".tooltool-{blob.digest}.lock").mkdir(parents=True)  # not a file: no claim
    write_manifest(workdir, [blob])
    outcome = run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert_fetched(workdir, [blob], only=True)
    assert f"WARNING - cache folder '{cache}' cannot be used" in outcome.stderr


def test_a_full_cache_is_done_without(tmp_path: Path) -> None:
    """The cache on a filesystem of 128 KiB (a tmpfs in a mount namespace of its own)."""
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "-m", "mount", "-t", "tmpfs", "tmpfs", str(tmp_path)]
    if unshare is None or subprocess.run(probe, capture_output=True, check=False).returncode:
        pytest.skip("mounting a tmpfs needs unshare and CAP_SYS_ADMIN")
    cache, work = tmp_path / "cache", tmp_path / "work"
    cache.mkdir()
    work.mkdir()
    write_manifest(work, BLOBS)
    mount = 'mount -t tmpfs -o size=128k tmpfs "$1" && shift && exec "$@"'
    wrapper = [unshare, "-m", "sh", "-c", mount, "sh", str(cache)]
    with HostileServer({blob.digest: blob.data for blob in BLOBS}) as server:
        command = ["--url", server.url, "-c", str(cache), "fetch"]
        process = tooltool_process(command, work, wrapper=wrapper)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"WARNING - cache folder '{cache}' cannot be used" in err
    assert_fetched(work, BLOBS, only=True)


def test_a_fetch_waiting_on_a_killed_one_resumes_its_part_file(tmp_path: Path) -> None:
    cache, killed, waiting = tmp_path / "cache", tmp_path / "killed", tmp_path / "waiting"
    killed.mkdir()
    waiting.mkdir()
    with slow_fetch(killed, cache=cache) as slow:
        write_manifest(waiting, [slow.blob])
        second = tooltool_process(slow.command, waiting)
        slow.process.kill()
        slow.process.communicate(timeout=10)
        slow.server.delay = 0
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        requested = [seen.headers.get("Range") for seen in slow.server.blob_gets()]
    assert requested[0] is None
    assert requested[1] is not None  # resumed from what the killed fetch wrote
    assert 0 < int(requested[1].removeprefix("bytes=").removesuffix("-")) < len(slow.blob.data)
    assert len(requested) == 2
    assert_fetched(waiting, [slow.blob], only=True)
    assert sorted(p.name for p in cache.iterdir()) == [slow.blob.digest]


def test_a_fetch_waiting_on_another_stops_when_interrupted(tmp_path: Path) -> None:
    cache, first, second = tmp_path / "cache", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with slow_fetch(first, cache=cache, delay=0.5) as slow:  # a quarter of an hour
        write_manifest(second, [slow.blob])
        with reaped(tooltool_process(slow.command, second)) as waiting:
            wait_for_output(waiting, "fetching 1 file(s)")
            time.sleep(0.2)  # at the claim by now, waiting
            waiting.send_signal(signal.SIGINT)
            _, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 130, err
    assert "Traceback" not in err


PLANTED = ["symlink to a file", "symlink to nowhere", "fifo"]


def _fetched_in(work: Path, command: list[str], wrapper: Sequence[str] = ()) -> tuple[int, str]:
    """The console script's exit status and stderr (started by `wrapper`, if any); killed if
    still running after 20 s."""
    with reaped(tooltool_process(command, work, wrapper=wrapper)) as process:
        _, err = process.communicate(timeout=20)
    return process.returncode, err


def _shared_cache(tmp_path: Path, blob: Blob, victim: bytes | None) -> tuple[Path, Path, Path]:
    """A working folder whose manifest lists `blob`, a cache folder, and the path of another
    user's file (holding `victim`, if any)."""
    work, cache, victim_path = tmp_path / "work", tmp_path / "cache", tmp_path / "victim"
    work.mkdir()
    cache.mkdir()
    write_manifest(work, [blob])
    if victim is not None:
        victim_path.write_bytes(victim)
    return work, cache, victim_path


def _plant(path: Path, kind: str, victim: Path) -> None:
    """What another user of a shared cache could leave at a name the fetch will use."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(victim)


@pytest.mark.parametrize("kind", PLANTED)
@pytest.mark.parametrize("where", ["cache", "working folder"])
def test_a_part_file_planted_by_another_user_is_never_written_through(
    tmp_path: Path, kind: str, where: str
) -> None:
    """A symlink at a part file's name must not send the download's bytes (truncating it
    first) to whatever it points at; a FIFO must not hang the fetch: either is removed,
    and the file fetched."""
    blob = BLOBS[0]
    work, cache, victim = _shared_cache(tmp_path, blob, b"precious" if kind == PLANTED[0] else None)
    folder = cache if where == "cache" else work
    _plant(folder / f".tooltool-{blob.digest}.part", kind, victim)
    with HostileServer({blob.digest: blob.data}) as server:
        command = ["--url", server.url, "fetch"] + (["-c", str(cache)] if where == "cache" else [])
        code, err = _fetched_in(work, command)
    assert code == 0, err
    assert_fetched(work, [blob], only=True)
    assert not (work / blob.name).is_symlink()
    if kind == PLANTED[0]:
        assert victim.read_bytes() == b"precious"
    else:
        assert not victim.exists()


@pytest.mark.parametrize("kind", PLANTED)
def test_a_cache_entry_that_is_no_file_is_not_used(tmp_path: Path, kind: str) -> None:
    """An entry that is a symlink (to a file with the right bytes, that its owner may change
    once it is linked into the working folder) or a FIFO is not an entry: the file is
    fetched, and the entry replaced."""
    blob = BLOBS[0]
    work, cache, victim = _shared_cache(tmp_path, blob, blob.data if kind == PLANTED[0] else None)
    _plant(cache / blob.digest, kind, victim)
    with HostileServer({blob.digest: blob.data}) as server:
        code, err = _fetched_in(work, ["--url", server.url, "-c", str(cache), "fetch"])
        assert len(server.blob_gets()) == 1
    assert code == 0, err
    assert_fetched(work, [blob], only=True)
    assert not (work / blob.name).is_symlink()
    assert not (cache / blob.digest).is_symlink()
    assert (work / blob.name).stat().st_ino == (cache / blob.digest).stat().st_ino
    if victim.exists():
        assert (work / blob.name).stat().st_ino != victim.stat().st_ino


@pytest.mark.parametrize("link", [True, False])
def test_placing_never_writes_through_a_symlink_at_the_temporary_name(
    tmp_path: Path, link: bool
) -> None:
    """The temporary name beside the target is predictable: a symlink planted there (in a
    working folder others can write) must not receive the bytes (a copy, across
    filesystems or for a second name) nor be followed."""
    source, target, victim = tmp_path / "entry", tmp_path / "tool.bin", tmp_path / "victim"
    source.write_bytes(b"tool")
    victim.write_bytes(b"precious")
    temporary = f".tooltool-{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    (tmp_path / temporary).symlink_to(victim)
    place(source, target, link=link)
    assert target.read_bytes() == b"tool"
    assert not target.is_symlink()
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / temporary).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_cache_entry_is_copied_not_linked(tmp_path: Path) -> None:
    """An entry of another user sharing the cache is theirs to change once it is verified:
    a hard link would change the working file with it. It is copied (not fetched again)."""
    blob = BLOBS[0]
    work, cache, _ = _shared_cache(tmp_path, blob, None)
    foreign = cache / blob.digest
    foreign.write_bytes(blob.data)
    os.chown(foreign, 65534, 65534)
    with HostileServer({blob.digest: blob.data}) as server:
        code, err = _fetched_in(work, ["--url", server.url, "-c", str(cache), "fetch"])
        assert server.blob_gets() == []
    assert code == 0, err
    assert_fetched(work, [blob], only=True)
    assert (work / blob.name).stat().st_ino != foreign.stat().st_ino
    assert (work / blob.name).stat().st_uid == 0


@pytest.mark.parametrize("where", ["cache", "working folder"])
def test_a_folder_at_a_part_files_name_is_one_line(tmp_path: Path, where: str) -> None:
    """It cannot be removed: in the cache, the cache is done without; in the working
    folder, the file fails, in one line."""
    blob = BLOBS[0]
    work, cache, _ = _shared_cache(tmp_path, blob, None)
    folder = cache if where == "cache" else work
    (folder / f".tooltool-{blob.digest}.part").mkdir()
    with HostileServer({blob.digest: blob.data}) as server:
        command = ["--url", server.url, "fetch"] + (["-c", str(cache)] if where == "cache" else [])
        code, err = _fetched_in(work, command)
    assert "Traceback" not in err
    if where == "cache":
        assert code == 0, err
        assert f"WARNING - cache folder '{cache}' cannot be used" in err
        assert_fetched(work, [blob])
    else:
        assert code == 1
        assert err.splitlines()[-2].endswith(".part' cannot be written: Is a directory")


def test_a_part_file_replaced_while_it_is_written_is_not_used(tmp_path: Path) -> None:
    """Another file renamed over the part file mid-download (another user of a shared
    cache; the legacy client's purge removing the lock, a second fetch then writing its own
    part file): the bytes hashed went to the replaced file, so what is at the name is not
    what was verified. It is not used: the file is fetched again."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    with slow_fetch(work, cache=cache) as slow:
        impostor = cache / "impostor"
        impostor.write_bytes(b"\0" * len(slow.blob.data))
        os.replace(impostor, slow.part)
        slow.server.delay = 0
        _, err = slow.process.communicate(timeout=60)
    assert slow.process.returncode == 0, err
    assert_fetched(work, [slow.blob], only=True)
    assert sha512_of(cache / slow.blob.digest) == slow.blob.digest


def test_entries_are_written_by_their_owner_only(tmp_path: Path) -> None:
    """Under a umask of 002 the group could change an entry, and with it every working file
    linked to it: an entry is made writable by its owner only; one the group may write is
    copied, not linked."""
    blob = BLOBS[0]
    work, cache, _ = _shared_cache(tmp_path, blob, None)
    group_writable = cache / BLOBS[1].digest
    group_writable.write_bytes(BLOBS[1].data)
    group_writable.chmod(0o664)
    write_manifest(work, BLOBS[:2])
    with HostileServer({blob.digest: blob.data}) as server:
        command = ["--url", server.url, "-c", str(cache), "fetch"]
        code, err = _fetched_in(work, command, ["sh", "-c", 'umask 002 && exec "$@"', "sh"])
    assert code == 0, err
    assert_fetched(work, BLOBS[:2], only=True)
    assert stat.S_IMODE((cache / blob.digest).stat().st_mode) == 0o644
    assert (work / blob.name).stat().st_ino == (cache / blob.digest).stat().st_ino
    assert (work / BLOBS[1].name).stat().st_ino != group_writable.stat().st_ino
