"""``tooltool list`` and ``validate``: the legacy output (``P``resent, ``V``alid, name) and
exit codes, without the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.client.fetch_helpers import Blob, reaped, run_tooltool, tooltool_process, write_manifest
from tests.client.hostile_server import HostileServer

GOOD, BAD, ABSENT = Blob("good.bin", b"good"), Blob("bad.bin", b"bad"), Blob("absent.bin", b"-")


@pytest.fixture
def mixed(workdir: Path) -> Path:
    """A manifest of a valid file, an invalid one and an absent one."""
    (workdir / GOOD.name).write_bytes(GOOD.data)
    (workdir / BAD.name).write_bytes(b"not bad")
    return write_manifest(workdir, [GOOD, BAD, ABSENT])


def test_list_says_present_and_valid(mixed: Path) -> None:
    outcome = run_tooltool(["list"])
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout == "P\tV\tgood.bin\nP\t-\tbad.bin\n-\t-\tabsent.bin\n"


def test_list_by_the_console_script(mixed: Path) -> None:
    process = tooltool_process(["list"], mixed.parent)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, err) == (0, "")
    assert out == "P\tV\tgood.bin\nP\t-\tbad.bin\n-\t-\tabsent.bin\n"


def test_validate_names_what_is_wrong(mixed: Path) -> None:
    outcome = run_tooltool(["validate"])
    assert outcome.code == 1
    assert outcome.stdout == ""
    assert outcome.lines == [
        "ERROR - bad.bin is present and invalid",
        "ERROR - absent.bin is absent",
    ]


def test_validate_all_valid(workdir: Path) -> None:
    (workdir / GOOD.name).write_bytes(GOOD.data)
    write_manifest(workdir, [GOOD], name="other.tt")
    outcome = run_tooltool(["-m", "other.tt", "validate"])
    assert (outcome.code, outcome.stdout, outcome.stderr) == (0, "", "")


@pytest.mark.parametrize("command", ["list", "validate"])
def test_a_missing_manifest(workdir: Path, command: str) -> None:
    outcome = run_tooltool([command])
    assert outcome.code == 1
    assert outcome.lines == ["ERROR - manifest file 'manifest.tt' does not exist"]


@pytest.mark.parametrize("command", ["list", "validate", "fetch"])
def test_a_fifo_in_place_of_an_empty_file_is_invalid_not_a_hang(
    workdir: Path, command: str
) -> None:
    """A FIFO has size 0, like the empty file the manifest lists: reading it would wait for
    a writer forever. It is no file: invalid (and replaced by fetch)."""
    empty = Blob("empty", b"")
    write_manifest(workdir, [empty])
    os.mkfifo(workdir / empty.name)
    with HostileServer({empty.digest: b""}) as server:
        command_line = ["--url", server.url, command]
        with reaped(tooltool_process(command_line, workdir)) as process:
            out, err = process.communicate(timeout=20)
    if command == "list":
        assert (process.returncode, out) == (0, "P\t-\tempty\n")
    elif command == "validate":
        assert (process.returncode, err) == (1, "ERROR - empty is present and invalid\n")
    else:
        assert process.returncode == 0, err
        assert (workdir / empty.name).read_bytes() == b""


def test_a_reader_that_leaves_is_no_traceback(workdir: Path) -> None:
    """``tooltool list | head -1``: the pipe closes while list still writes."""
    write_manifest(workdir, [Blob(f"f{n}", b"") for n in range(20_000)])
    process = tooltool_process(["list"], workdir)
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=30)
    assert (process.returncode, err) == (1, "")
