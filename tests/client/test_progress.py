"""What a fetch shows: a progress bar on a terminal, one line per file in a log."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.client.fetch_helpers import FetchGateway, assert_fetched, write_manifest


def _script() -> str:
    script = shutil.which("tooltool", path=str(Path(sys.executable).parent))
    assert script is not None, "the tooltool console script is not installed"
    return script


def _fetch(folder: Path, url: str, *, terminal: bool) -> tuple[int, str]:
    """`tooltool fetch` with its stderr on a pseudo-terminal (or a pipe); what it wrote."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TOOLTOOL_", "TASKCLUSTER_"))
    }
    environ |= {"COLUMNS": "100", "TERM": "xterm"}
    command = [_script(), "--url", url, "fetch"]
    if not terminal:
        done = subprocess.run(
            command,
            cwd=folder,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    # A terminal 100 columns wide, as a real one says it is.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        process = subprocess.Popen(
            command, cwd=folder, env=environ, stdout=subprocess.DEVNULL, stderr=follower
        )
        os.close(follower)
        follower = -1
        output = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        return process.wait(timeout=60), output.decode("utf-8", "replace")
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


def test_a_terminal_gets_a_progress_bar(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    status, shown = _fetch(workdir, fetch_gateway.url, terminal=True)
    assert status == 0, shown
    assert_fetched(workdir, fetch_gateway.public)
    count = len(fetch_gateway.public)
    assert f"{count}/{count} files" in shown  # files done, beside the bytes
    assert "\r" in shown  # a bar redrawn in place
    assert "B/s" in shown  # its rate
    assert "INFO - " not in shown  # no log lines between redraws
    for blob in fetch_gateway.public:
        assert f"{blob.name}: fetched" in shown


def test_a_log_gets_one_line_per_file(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    status, shown = _fetch(workdir, fetch_gateway.url, terminal=False)
    assert status == 0, shown
    lines = shown.splitlines()
    assert "\r" not in shown
    assert lines[0].startswith(f"INFO - fetching {len(fetch_gateway.public)} file(s)")
    fetched = sorted(line for line in lines if ": fetched " in line)
    assert [line.split(":", 1)[0] for line in fetched] == sorted(
        f"INFO - {blob.name}" for blob in fetch_gateway.public
    )
