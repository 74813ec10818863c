"""``tooltool list`` and ``validate``: the legacy output (``P``resent, ``V``alid, name) and
exit codes, without the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.fetch_helpers import Blob, run_tooltool, tooltool_process, write_manifest

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
