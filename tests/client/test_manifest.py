"""Manifests as the legacy client read them: what it accepted is accepted, and what
``add`` writes back is in its layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.client.conftest import cli
from tests.client.fetch_helpers import Blob, write_manifest
from tests.conftest import free_port
from tooltool_client import manifest

RECORD = Blob("a.bin", b"a").record()


@pytest.mark.parametrize(
    ("value", "unpack"),
    [("True", True), ("False", True), (1, True), ("", False), (0, False), (None, False)],
)
def test_unpack_is_read_by_its_truth(value: object, unpack: bool) -> None:
    # mozharness's emulator manifests say "unpack": "True"; the legacy client unpacked
    # on any true value.
    [record] = manifest.parse(json.dumps([{**RECORD, "unpack": value}]))
    assert record.unpack is unpack
    assert json.loads(manifest.dumps([record]))[0].get("unpack", False) is unpack


def _archive() -> Blob:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        member = tarfile.TarInfo("sdk/README")
        member.size = 2
        tar.addfile(member, io.BytesIO(b"hi"))
    return Blob("sdk.tar.gz", data.getvalue())


def test_a_string_unpack_unpacks_on_fetch(workdir: Path) -> None:
    archive = _archive()
    (workdir / archive.name).write_bytes(archive.data)  # present: no request made
    write_manifest(workdir, [archive.record(unpack="True")])
    run = cli("--url", f"http://127.0.0.1:{free_port()}/", "fetch")
    assert run.code == 0, run.stderr
    assert (workdir / "sdk" / "README").read_bytes() == b"hi"
