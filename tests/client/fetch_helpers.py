"""Helpers of the tests of ``fetch``, ``list``, ``validate`` and ``purge``: files as a
manifest lists them (`Blob`, `write_manifest`), the command line in process with tiny
waits (`run_tooltool`) or as the console script (`tooltool_process`, `fetching`,
`slow_fetch`), and checks of what a fetch left (`assert_fetched`). The live gateway
they fetch from is the `fetch_gateway` fixture of conftest.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.client.hostile_server import HostileServer
from tests.client.recording_proxy import RecordingProxy

if TYPE_CHECKING:
    from tests.client.conftest import CliRun

# Retries after a hundredth of a second, and a server silent for 2 s has failed.
FAST = {"TOOLTOOL_RETRY_SECONDS": "0.01", "TOOLTOOL_READ_TIMEOUT": "2"}


@dataclass(frozen=True)
class Blob:
    """A file's name and bytes, as a manifest lists it."""

    name: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha512(self.data).hexdigest()

    def record(self, **extra: Any) -> dict[str, Any]:
        return {
            "filename": self.name,
            "size": len(self.data),
            "algorithm": "sha512",
            "digest": self.digest,
            **extra,
        }


@dataclass
class FetchGateway:
    """A live gateway holding `files` (public) and `internal`, reached through `proxy`."""

    store: str
    proxy: RecordingProxy
    files: dict[str, Blob]
    internal: Blob
    direct_url: str

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def public(self) -> list[Blob]:
        return list(self.files.values())


def write_manifest(
    folder: Path, records: Iterable[Blob | Mapping[str, Any]], name: str = "manifest.tt"
) -> Path:
    path = folder / name
    entries = [record.record() if isinstance(record, Blob) else record for record in records]
    path.write_text(json.dumps(entries, indent=2))
    return path


def run_tooltool(args: Sequence[str], environ: Mapping[str, str] | None = None) -> CliRun:
    """The command line in process, in the current folder, with `FAST` waits."""
    from tests.client.conftest import cli  # conftest imports this module

    return cli(*args, environ={**FAST, **(environ or {})})


def tooltool_process(
    args: Sequence[str],
    cwd: Path,
    *,
    wrapper: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """The installed ``tooltool`` console script, started in `cwd` (by `wrapper`, if any),
    with `FAST` waits (and `environ`)."""
    script = shutil.which("tooltool", path=str(Path(sys.executable).parent))
    assert script is not None, "the tooltool console script is not installed"
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TASKCLUSTER_", "TOOLTOOL_"))
    }
    return subprocess.Popen(
        [*wrapper, script, *args],
        cwd=cwd,
        env={**inherited, **FAST, **(environ or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """`process`, killed at the end if it still runs."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for(condition: Callable[[], object], process: subprocess.Popen[str], what: str) -> None:
    """Until `condition` holds, while `process` runs (30 s at most)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {what} in 30 s"
        time.sleep(0.02)


def wait_for_output(process: subprocess.Popen[str], text: str) -> None:
    """Until `process` has written `text` to its stderr (30 s at most)."""
    assert process.stderr is not None
    fd, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while text.encode() not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} in 30 s: {seen!r}"
            if selector.select(remaining):
                chunk = os.read(fd, 65536)  # the pipe itself: nothing left in a buffer
                assert chunk, f"the process ended before writing {text!r}: {seen!r}"
                seen += chunk


@contextlib.contextmanager
def fetching(args: Sequence[str], cwd: Path, part: Path) -> Iterator[subprocess.Popen[str]]:
    """The console script running `args` in `cwd`, once it has written to `part` (the part
    file of a download under way); killed at the end if it still runs."""
    with reaped(tooltool_process(args, cwd)) as process:
        wait_for(lambda: part.exists() and part.stat().st_size > 0, process, "part file")
        yield process


@dataclass
class SlowFetch:
    """A fetch of `blob`, served slowly by `server`, under way in `process`."""

    server: HostileServer
    process: subprocess.Popen[str]
    blob: Blob
    part: Path
    command: list[str]


@contextlib.contextmanager
def slow_fetch(
    folder: Path, *, cache: Path | None = None, delay: float = 0.02
) -> Iterator[SlowFetch]:
    """The console script fetching a 2 MiB file into `folder` (through `cache`, if given),
    from a server sending 64 KiB every `delay` seconds, once bytes are in its part file."""
    blob = Blob("big.bin", os.urandom(2 * 1024 * 1024))
    write_manifest(folder, [blob])
    part = (cache or folder) / f".tooltool-{blob.digest}.part"
    with HostileServer({blob.digest: blob.data}) as server:
        server.plan, server.delay = ["slow"], delay
        command = ["-v", "--url", server.url, *(["-c", str(cache)] if cache else []), "fetch"]
        with fetching(command, folder, part) as process:
            yield SlowFetch(server, process, blob, part, command)


def sha512_of(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def assert_fetched(folder: Path, blobs: Sequence[Blob], *, only: bool = False) -> None:
    """Each blob's file in `folder` holds its bytes; with `only`, nothing else is there but
    the manifest (no part, lock or temporary file left)."""
    for blob in blobs:
        assert sha512_of(folder / blob.name) == blob.digest, blob.name
    if only:
        expected = sorted({blob.name for blob in blobs} | {"manifest.tt"})
        assert sorted(path.name for path in folder.iterdir()) == expected
