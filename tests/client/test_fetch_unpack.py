"""``fetch`` with ``"unpack": true`` against a live gateway: archives unpacked in place,
a hostile one refused with one line and nothing of it left."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.client.conftest import LiveGateway, cli


def _tar_xz(path: Path, members: dict[str, bytes], *, hostile: str | None = None) -> Path:
    with tarfile.open(path, "w:xz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if hostile is not None:
            link = tarfile.TarInfo(hostile)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            archive.addfile(link)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _add(gateway: LiveGateway, source: Path, workdir: Path) -> None:
    gateway.import_file(source, "public")
    result = cli(
        "-m", str(workdir / "manifest.tt"), "add", "--unpack", "--visibility", "public", str(source)
    )
    assert result.code == 0, result.stderr


def test_archives_are_unpacked_after_fetching(
    live_gateway: LiveGateway, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    _add(live_gateway, _tar_xz(sources / "clang.tar.xz", {"clang/bin/clang": b"c" * 5000}), workdir)
    _add(live_gateway, _zip(sources / "sdk.zip", {"sdk/lib.a": b"s" * 300}), workdir)
    (workdir / "clang").mkdir()
    (workdir / "clang" / "stale").write_text("from an older clang")  # the base folder is replaced
    cache = tmp_path / "cache"

    result = cli("--url", live_gateway.url, "fetch", "-c", str(cache))
    assert result.code == 0, result.stderr
    assert (workdir / "clang" / "bin" / "clang").read_bytes() == b"c" * 5000
    assert not (workdir / "clang" / "stale").exists()
    assert (workdir / "sdk" / "lib.a").read_bytes() == b"s" * 300
    assert (workdir / "clang.tar.xz").is_file()  # the archive stays, as tooltool.py left it

    # Again from the cache (no server at all), into a fresh folder: unpacked the same.
    again = tmp_path / "again"
    again.mkdir()
    (again / "manifest.tt").write_text((workdir / "manifest.tt").read_text())
    monkeypatch.chdir(again)
    result = cli("--url", "http://127.0.0.1:9/", "fetch", "-c", str(cache))
    assert result.code == 0, result.stderr
    assert (again / "clang" / "bin" / "clang").read_bytes() == b"c" * 5000
    assert (again / "sdk" / "lib.a").read_bytes() == b"s" * 300


def test_a_hostile_archive_is_refused_whole(
    live_gateway: LiveGateway, workdir: Path, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    archive = _tar_xz(sources / "evil.tar.xz", {"evil/readme": b"hello"}, hostile="evil/passwd")
    _add(live_gateway, archive, workdir)
    before = sorted(p.name for p in workdir.iterdir())

    result = cli("--url", live_gateway.url, "fetch")
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR - ")]
    assert errors[0].startswith(
        "ERROR - evil.tar.xz: refused, nothing unpacked: member 'evil/passwd'"
    )
    assert "Traceback" not in result.stderr
    # The archive was fetched and verified; nothing of it was unpacked.
    assert sorted(p.name for p in workdir.iterdir()) == sorted([*before, "evil.tar.xz"])
    assert json.loads((workdir / "manifest.tt").read_text())[0]["unpack"] is True
