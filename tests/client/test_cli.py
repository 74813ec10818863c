"""The command line read as the legacy client's optparse read it: options anywhere, long
options by a unique prefix, and an option's value the next argument whatever it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.conftest import cli
from tooltool_client.cli import parse


def test_a_value_may_start_with_a_dash(workdir: Path) -> None:
    (workdir / "a.bin").write_bytes(b"a")
    run = cli("-m", "-x.tt", "add", "--version", "-rc1", "a.bin")
    assert run.code == 0, run.stderr
    assert json.loads((workdir / "-x.tt").read_text())[0]["version"] == "-rc1"
    options = parse(["upload", "--message", "-bug 1234: clang", "-s", "-1", "-r", "-"])
    assert (options.message, options.size, options.region) == ("-bug 1234: clang", -1.0, "-")


@pytest.mark.parametrize(
    "argv",
    [
        ["-qm", "-x.tt", "list"],  # a flag, then an option taking the next argument
        ["-qm-x.tt", "list"],
        ["--manifest=-x.tt", "list", "-q"],
        ["list", "--mani", "-x.tt", "--qu"],
    ],
)
def test_short_clusters_and_attached_values(argv: list[str]) -> None:
    options = parse(argv)
    assert (options.manifest, options.command, options.loglevel) == ("-x.tt", "list", 40)


def test_abbreviations_name_the_legacy_options() -> None:
    # --s was --size alone before --scope came: it still is; --sc is --scope.
    assert parse(["--s", "2", "purge"]).size == 2.0
    assert parse(["--si=3", "purge"]).size == 3.0
    assert parse(["--sc", "a:b", "token"]).scopes == ["a:b"]
    assert parse(["--auth", "~/t", "--cache", "c", "fetch"]).auth_file == "~/t"
    assert parse(["--vis", "public", "add", "f"]).visibility == "public"


@pytest.mark.parametrize("argv", [["--ver", "1", "add"], ["-m"], ["--nope", "list"], []])
def test_what_optparse_refused_is_a_usage_error(
    argv: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(*argv).code == 2
    assert "tooltool: error:" in capsys.readouterr().err


def test_only_what_follows_a_double_dash_is_left_alone() -> None:
    options = parse(["fetch", "-c", "cache", "--", "-m", "--url"])
    assert (options.cache_folder, options.manifest, options.files) == (
        "cache",
        "manifest.tt",
        ["-m", "--url"],
    )


@pytest.mark.parametrize("size", ["inf", "nan", "-1"])
def test_purge_size_must_be_a_finite_number(size: str, workdir: Path) -> None:
    run = cli("-c", str(workdir / "cache"), "-s", size, "purge")
    assert run.code == 1
    assert run.lines == [f"ERROR - --size must be a number of GB, 0 or more, not {float(size)}"]
