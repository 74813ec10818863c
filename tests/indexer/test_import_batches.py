"""Operator imports are batches: searchable like uploads the moment the import finishes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from indexer.cli import EXIT_OK, main
from tests.gateway.auth_helpers import hawk
from tests.indexer.test_malformed import cli_environ
from tests.system import BASE, System


def get(system: System, path: str) -> list[dict]:
    answer = system.client.get(path, headers={"Authorization": hawk("reader", BASE + path)})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_an_import_is_a_batch_found_at_once(
    system: System,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = cli_environ(system, request) | {"USER": "releng"}
    files = []
    for name in ("clang-17.tar.xz", "clang-17-src.tar.xz"):
        files.append(tmp_path / name)
        files[-1].write_bytes(os.urandom(100))
    argv = ["import", "--visibility", "internal", "-m", "clang 17 toolchain", *map(str, files)]
    assert main(argv, environ) == EXIT_OK
    digests = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    # No indexer pass, no consistency check: found at once.
    [batch] = get(system, "/upload?q=clang%2017")
    assert batch["author"] == f"releng@{socket.gethostname()}"
    assert batch["message"] == "clang 17 toolchain"
    assert sorted(batch["files"]) == sorted(path.name for path in files)
    assert all(entry["has_instances"] for entry in batch["files"].values())
    found = get(system, "/file?q=clang-17-src")
    assert [entry["digest"] for entry in found] == [digests[1]]
    shown = system.client.get(
        f"/upload/{batch['id']}",
        headers={"Authorization": hawk("reader", f"{BASE}/upload/{batch['id']}")},
    ).json()
    assert shown["id"] == batch["id"]


def test_an_import_names_its_author(
    system: System,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = cli_environ(system, request)
    path = tmp_path / "sdk.zip"
    path.write_bytes(os.urandom(10))
    argv = ["import", "--visibility", "public", "--author", "bob", "-m", "the sdk", str(path)]
    assert main(argv, environ) == EXIT_OK
    [batch] = get(system, "/upload?q=bob")
    assert batch["message"] == "the sdk"
    # Importing the same bytes again is another batch, and another arrival of the file.
    assert main(argv, environ) == EXIT_OK
    assert len(get(system, "/upload?q=bob")) == 2
