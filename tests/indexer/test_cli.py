"""tooltool-indexer import, on the local store and on S3 (two regions)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.cli import main
from indexer.schema import blob_key, index_key
from tests.conftest import SeaweedFS


@pytest.fixture(params=["local", "local-regions", "s3"])
def environ(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "local":
        return {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "USER": "operator"}
    if request.param == "local-regions":
        return {
            "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
            "TOOLTOOL_LOCAL_REGIONS": "east,west",
            "USER": "operator",
        }
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    regions = [("us-east-1", seaweedfs.new_bucket()), ("us-west-2", seaweedfs.new_bucket())]
    return {**seaweedfs.environ(*regions), "USER": "operator"}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def regions_of(environ: dict[str, str]):
    from indexer.config import StoreSettings, open_regions

    return open_regions(StoreSettings.from_environ(environ))


def test_import_prints_and_stores_everywhere(
    environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path, "first.tar.gz", os.urandom(3000))
    second = write(tmp_path, "second.bin", b"")
    code = main(
        ["import", "--visibility", "internal", "-m", "toolchain", str(first), str(second)], environ
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [
        f"{hashlib.sha512(path.read_bytes()).hexdigest()} {path.stat().st_size} {path.name}"
        for path in (first, second)
    ]
    assert lines == expected
    regions = regions_of(environ)
    digest = lines[0].split()[0]
    for store in regions:
        assert store.get(blob_key(digest))[0] == first.read_bytes()
    raw, _ = regions.index.get(index_key(digest))
    index = json.loads(raw)
    assert index["visibility"] == "internal"
    assert index["size"] == 3000
    assert index["instances"] == sorted(regions.names)
    assert index["etags"] == {store.region: store.head(blob_key(digest)).etag for store in regions}
    assert index["uploads"][0]["filename"] == "first.tar.gz"
    assert index["uploads"][0]["author"] == f"operator@{socket.gethostname()}"
    assert index["uploads"][0]["message"] == "toolchain"


def test_reimport_stores_nothing_new(environ: dict[str, str], tmp_path: Path) -> None:
    """The same bytes again: the blobs stay as they were; the import is one more batch,
    recorded as one more arrival of the file."""
    path = write(tmp_path, "same.bin", b"same bytes")
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    regions = regions_of(environ)
    digest = hashlib.sha512(b"same bytes").hexdigest()
    blobs = [store.head(blob_key(digest)) for store in regions]
    before = json.loads(regions.index.get(index_key(digest))[0])
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    assert [store.head(blob_key(digest)) for store in regions] == blobs
    after = json.loads(regions.index.get(index_key(digest))[0])
    assert after["instances"] == before["instances"]
    assert after["verified_at"] == before["verified_at"]
    assert [upload["batch_id"] for upload in after["uploads"]] == [1, 2]


def test_reimport_restores_a_damaged_copy(environ: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path, "same.bin", b"same bytes")
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    regions = regions_of(environ)
    digest = hashlib.sha512(b"same bytes").hexdigest()
    damaged = regions[regions.names[-1]]
    damaged.put(blob_key(digest), b"same size!")
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    assert damaged.get(blob_key(digest))[0] == b"same bytes"
    index = json.loads(regions.index.get(index_key(digest))[0])
    assert index["etags"][damaged.region] == damaged.head(blob_key(digest)).etag


def test_import_overwrites_other_bytes_found_at_the_key(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """Bytes of the file's size already at ``sha512/<digest>`` (put by hand, or left by a
    killed import) are hashed before they are listed: other bytes are overwritten."""
    data = os.urandom(3000)
    path = write(tmp_path, "tool.bin", data)
    digest = hashlib.sha512(data).hexdigest()
    regions = regions_of(environ)
    for store in regions:
        store.put(blob_key(digest), os.urandom(len(data)))
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    index = json.loads(regions.index.get(index_key(digest))[0])
    assert index["etags"] == {store.region: store.head(blob_key(digest)).etag for store in regions}
    for store in regions:
        assert store.get(blob_key(digest))[0] == data


def test_other_visibility_is_refused(
    environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "file.bin", b"some bytes")
    assert main(["import", "--visibility", "public", str(path)], environ) == 0
    capsys.readouterr()
    assert main(["import", "--visibility", "internal", str(path)], environ) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("VisibilityConflict: ")
    assert "already stored as public" in captured.err
    raw, _ = regions_of(environ).index.get(index_key(hashlib.sha512(b"some bytes").hexdigest()))
    assert json.loads(raw)["visibility"] == "public"


def test_unreadable_file(
    environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good.bin", b"good")
    assert (
        main(["import", "--visibility", "public", str(tmp_path / "nope"), str(good)], environ) == 5
    )
    captured = capsys.readouterr()
    assert captured.err.startswith("UnreadableFile: ")
    assert captured.out.endswith(" 4 good.bin\n")


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"S3_REGIONS": "us-east-1"}, "S3_REGIONS"),
        ({"S3_REGIONS": "us-east-1:b"}, "S3_REGIONS"),
        ({"S3_REGIONS": "us-east-1:bucket;us-east-1:other"}, "S3_REGIONS"),
        ({"S3_REGIONS": "us-east-1:bucket", "S3_ENDPOINT_URL": "ftp://x"}, "S3_ENDPOINT_URL"),
    ],
)
def test_bad_settings(environ, name, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "x", b"x")
    assert main(["import", "--visibility", "public", str(path)], environ) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"SettingsError: {name}: ")
    assert "Traceback" not in err


def test_unreachable_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    environ = {
        "S3_REGIONS": "us-east-1:bucket-a",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "S3_REGIONS_ACCESS_KEY_ID": "x",
        "S3_REGIONS_SECRET_ACCESS_KEY": "y",
    }
    path = write(tmp_path, "x", b"x")
    assert main(["import", "--visibility", "public", str(path)], environ) == 4
    assert capsys.readouterr().err.startswith("StoreUnavailable: us-east-1: ")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "import", "--visibility", "secret", "f"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TOOLTOOL_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
