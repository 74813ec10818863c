"""Unpacking archives: every format, every hostile member refused whole, limits, placement."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tooltool_client.unpack import (
    STAGING_PREFIX,
    ArchiveTooLarge,
    CorruptArchive,
    UnknownArchive,
    UnpackError,
    UnsafeArchive,
    unpack_archive,
)

TAR_FORMATS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda data: data,
    "tar.gz": gzip.compress,
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar.zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


@dataclass(frozen=True)
class Member:
    """One archive member to write: a file, a directory, a symlink, a hard link or a device."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


def file(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    return Member(name, "file", data, mode=mode)


def folder(name: str) -> Member:
    return Member(name, "dir", mode=0o755)


def symlink(name: str, target: str) -> Member:
    return Member(name, "symlink", target=target, mode=0o777)


def hardlink(name: str, target: str) -> Member:
    return Member(name, "hardlink", target=target)


def special(name: str, kind: str) -> Member:
    return Member(name, kind)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = _TAR_TYPES[member.kind]
            info.mode = member.mode
            info.linkname = member.target
            info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return buffer.getvalue()


def write_tar(path: Path, members: list[Member], compress: Callable[[bytes], bytes]) -> Path:
    path.write_bytes(compress(tar_bytes(members)))
    return path


def write_zip(path: Path, members: list[Member]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for member in members:
            if member.kind == "dir":
                info = zipfile.ZipInfo(member.name.rstrip("/") + "/")
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                zipped.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(member.name)
            info.create_system = 3
            if member.kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zipped.writestr(info, member.target.encode())
            elif member.kind == "fifo":
                info.external_attr = (stat.S_IFIFO | 0o644) << 16
                zipped.writestr(info, b"")
            else:
                info.external_attr = (stat.S_IFREG | member.mode) << 16
                zipped.writestr(info, member.data, zipfile.ZIP_DEFLATED)
    return path


def write_archive(path: Path, kind: str, members: list[Member]) -> Path:
    if kind == "zip":
        return write_zip(path, members)
    return write_tar(path, members, TAR_FORMATS[kind])


def listing(directory: Path) -> list[tuple[str, str]]:
    """Every path under `directory` (hidden ones too) with its type, mode, size or link target."""
    entries = []
    for top, folders, files in os.walk(directory):
        for name in folders + files:
            path = Path(top, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                detail = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                detail = "dir"
            else:
                detail = f"file {oct(info.st_mode)} {path.read_bytes()!r}"
            entries.append((str(path.relative_to(directory)), detail))
    return sorted(entries)


@pytest.fixture
def destination(tmp_path: Path) -> Path:
    """A destination folder that already holds a file, a folder and a symlink."""
    directory = tmp_path / "destination"
    (directory / "tool").mkdir(parents=True)
    (directory / "tool" / "old.txt").write_text("old")
    (directory / "notes.txt").write_text("mine")
    (directory / "shortcut").symlink_to("tool")
    return directory


def assert_refused(
    archive: Path, directory: Path, error: type[UnpackError], *words: str, **limits: int
) -> UnpackError:
    """Unpacking fails with `error` naming the archive and `words`; `directory` is untouched."""
    before = listing(directory)
    with pytest.raises(error) as caught:
        unpack_archive(archive, directory=directory, **limits)
    message = str(caught.value)
    assert message.startswith(f"{archive.name}: ")
    assert "\n" not in message
    assert message.isprintable()
    for word in words:
        assert word in message
    assert listing(directory) == before
    assert not [path for path in directory.iterdir() if path.name.startswith(STAGING_PREFIX)]
    return caught.value


def normal_members(kind: str) -> list[Member]:
    members = [
        folder("tool"),
        file("tool/bin/run", b"#!/bin/sh\necho run\n", mode=0o755),
        file("tool/share/doc/a/b/readme.txt", b"deep"),
        file("tool/lib/libx.so.1", b"library"),
        symlink("tool/lib/libx.so", "libx.so.1"),
        symlink("tool/doc", "share/doc"),
        file("top.txt", b"top"),
    ]
    if kind != "zip":  # zip has no hard links
        members.append(hardlink("tool/lib/libx-copy.so", "tool/lib/libx.so.1"))
    return members


@pytest.mark.parametrize("kind", [*TAR_FORMATS, "zip"])
def test_every_format_unpacks_files_folders_links_and_modes(
    kind: str, tmp_path: Path, destination: Path
) -> None:
    # The name says nothing: formats are told by content.
    archive = write_archive(tmp_path / "download.bin", kind, normal_members(kind))
    unpack_archive(archive, directory=destination)

    tool = destination / "tool"
    assert not (tool / "old.txt").exists()  # the folder was replaced, not merged into
    assert (tool / "bin" / "run").read_bytes() == b"#!/bin/sh\necho run\n"
    assert (tool / "bin" / "run").stat().st_mode & 0o111 == 0o111
    assert (tool / "lib" / "libx.so.1").stat().st_mode & 0o111 == 0
    assert (tool / "share" / "doc" / "a" / "b" / "readme.txt").read_bytes() == b"deep"
    assert os.readlink(tool / "lib" / "libx.so") == "libx.so.1"
    assert (tool / "doc" / "a" / "b" / "readme.txt").read_bytes() == b"deep"
    assert (destination / "top.txt").read_bytes() == b"top"
    if kind != "zip":
        copy = tool / "lib" / "libx-copy.so"
        assert copy.stat().st_ino == (tool / "lib" / "libx.so.1").stat().st_ino
    assert (destination / "notes.txt").read_text() == "mine"
    assert os.readlink(destination / "shortcut") == "tool"
    assert sorted(path.name for path in destination.iterdir()) == [
        "notes.txt",
        "shortcut",
        "tool",
        "top.txt",
    ]


def test_high_mode_bits_and_group_other_write_are_dropped(
    tmp_path: Path, destination: Path
) -> None:
    members = [file("suid", mode=0o4777), file("sgid", mode=0o2775), file("sticky", mode=0o1666)]
    unpack_archive(write_tar(tmp_path / "m.tar", members, bytes), directory=destination)
    modes = {name: stat.S_IMODE((destination / name).stat().st_mode) for name in ("suid", "sgid")}
    assert modes == {"suid": 0o755, "sgid": 0o755}
    assert stat.S_IMODE((destination / "sticky").stat().st_mode) == 0o644


def test_zip_modes_give_only_the_executable_bit(tmp_path: Path, destination: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", [file("suid", mode=0o4777), file("plain", mode=0o666)])
    unpack_archive(archive, directory=destination)
    assert stat.S_IMODE((destination / "suid").stat().st_mode) & 0o7022 == 0
    assert (destination / "suid").stat().st_mode & 0o100
    assert stat.S_IMODE((destination / "plain").stat().st_mode) & 0o7133 == 0


def test_a_symlink_in_the_destination_is_replaced_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    directory = tmp_path / "destination"
    directory.mkdir()
    (directory / "tool").symlink_to(outside)
    archive = write_tar(tmp_path / "t.tar.gz", [file("tool/new.txt", b"new")], gzip.compress)

    unpack_archive(archive, directory=directory)

    assert not (directory / "tool").is_symlink()
    assert (directory / "tool" / "new.txt").read_bytes() == b"new"
    assert listing(outside) == [("keep.txt", "file 0o100644 b'keep'")]


def test_members_may_go_through_a_symlink_that_stays_inside(
    tmp_path: Path, destination: Path
) -> None:
    members = [folder("real"), symlink("alias", "real"), file("alias/inner.txt", b"in")]
    unpack_archive(write_tar(tmp_path / "a.tar", members, bytes), directory=destination)
    assert (destination / "real" / "inner.txt").read_bytes() == b"in"
    assert os.readlink(destination / "alias") == "real"


def test_an_entry_named_like_the_archive_replaces_it_once_extraction_is_complete(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "destination"
    directory.mkdir()
    members = [file("clang.tar.gz", b"inner"), file("clang/bin/clang", b"x" * 300_000)]
    archive = write_tar(directory / "clang.tar.gz", members, gzip.compress)

    unpack_archive(archive, directory=directory)

    assert (directory / "clang.tar.gz").read_bytes() == b"inner"
    assert (directory / "clang" / "bin" / "clang").read_bytes() == b"x" * 300_000


HOSTILE_TAR = {
    "absolute": ([file("/etc/evil")], "is an absolute path"),
    "windows drive": ([file("C:\\evil")], "is an absolute path"),
    "unc path": ([file("\\\\server\\share\\evil")], "is an absolute path"),
    "parent": ([file("../evil")], "escapes the destination folder"),
    "parent later": ([file("a/../../evil")], "escapes the destination folder"),
    "backslash parent": ([file("a\\..\\..\\evil")], "escapes the destination folder"),
    "symlink out": ([symlink("up", "../../evil")], "symlink pointing outside"),
    "symlink absolute": ([symlink("etc", "/etc")], "symlink to an absolute path"),
    "hard link out": ([hardlink("pw", "../../etc/passwd")], "hard link pointing outside"),
    "hard link absolute": ([hardlink("pw", "/etc/passwd")], "hard link to an absolute path"),
    "write through a link": (
        [folder("sub"), symlink("link", "sub/x"), file("link", b"x")],
        "writes through the symlink 'link'",
    ),
    "escape through a link": (
        [symlink("here", "."), file("here/here/../../evil")],
        "escapes the destination folder",
    ),
    "link redirected later": (
        [symlink("a", "b/.."), symlink("b", ".")],
        "would redirect an earlier symlink",
    ),
    "link replaced": (
        [folder("d/e"), symlink("s", "d/e"), symlink("a", "s/../.."), symlink("s", ".")],
        "replaces the symlink 's'",
    ),
    "symlink loop": (
        [symlink("ping", "pong"), symlink("pong", "ping"), file("ping/x")],
        "goes through too many symlinks",
    ),
    "character device": ([special("null", "chr")], "is a character device"),
    "block device": ([special("disk", "blk")], "is a block device"),
    "fifo": ([special("pipe", "fifo")], "is a fifo"),
}


@pytest.mark.parametrize("case", HOSTILE_TAR)
def test_a_hostile_tar_member_refuses_the_whole_archive(
    case: str, tmp_path: Path, destination: Path
) -> None:
    hostile, reason = HOSTILE_TAR[case]
    # Good members before the hostile one: none of them may be left behind.
    members = [file("tool/good.txt"), file("new.txt"), *hostile]
    archive = write_tar(tmp_path / "hostile.tar.gz", members, gzip.compress)
    error = assert_refused(archive, destination, UnsafeArchive, "refused", reason)
    assert isinstance(error, UnsafeArchive)
    assert error.member == hostile[-1].name


HOSTILE_ZIP = {
    "parent": ([file("../evil")], "escapes the destination folder"),
    "absolute": ([file("/evil")], "is an absolute path"),
    "symlink out": ([symlink("up", "../evil")], "symlink pointing outside"),
    "symlink absolute": ([symlink("etc", "/etc")], "symlink to an absolute path"),
    "fifo": ([special("pipe", "fifo")], "is a special file"),
}


@pytest.mark.parametrize("case", HOSTILE_ZIP)
def test_a_hostile_zip_member_refuses_the_whole_archive(
    case: str, tmp_path: Path, destination: Path
) -> None:
    hostile, reason = HOSTILE_ZIP[case]
    archive = write_zip(tmp_path / "hostile.zip", [file("tool/good.txt"), *hostile])
    assert_refused(archive, destination, UnsafeArchive, f"'{hostile[0].name}'", reason)


@pytest.mark.parametrize(
    "members",
    [
        [file("same"), folder("same")],
        [folder("same"), file("same")],
        [file("f"), file("f/x")],
        [file("f"), file("a/" * 2049)],
        [file("a"), file("b"), hardlink("b", "a")],
    ],
    ids=["folder over file", "file over folder", "inside a file", "too long", "link over file"],
)
def test_members_that_contradict_each_other_are_corrupt(
    members: list[Member], tmp_path: Path, destination: Path
) -> None:
    archive = write_tar(tmp_path / "odd.tar", members, bytes)
    assert_refused(archive, destination, CorruptArchive, f"member '{members[1].name[:50]}")


@pytest.mark.parametrize("target", ["a\0b", "a" * 5000])
def test_a_zip_symlink_target_no_path_can_be_is_corrupt(
    target: str, tmp_path: Path, destination: Path
) -> None:
    archive = write_zip(tmp_path / "odd.zip", [symlink("link", target)])
    assert_refused(archive, destination, CorruptArchive, "member 'link'")


def marked_encrypted(data: bytes) -> bytes:
    """The zip with its one member's "encrypted" flag set (zipfile writes no encrypted zip)."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        patched[data.index(signature) + offset] |= 0x1
    return bytes(patched)


def version_70(data: bytes) -> bytes:
    """The zip with its member needing version 7.0 to extract (beyond zipfile)."""
    patched = bytearray(data)
    patched[data.index(b"PK\x01\x02") + 6] = 70
    return bytes(patched)


@pytest.mark.parametrize(
    ("patch", "words"), [(version_70, "zip file version 7.0"), (marked_encrypted, "encrypted")]
)
def test_a_zip_that_zipfile_cannot_read_is_refused(
    patch: Callable[[bytes], bytes], words: str, tmp_path: Path, destination: Path
) -> None:
    archive = write_zip(tmp_path / "odd.zip", [file("tool/file")])
    archive.write_bytes(patch(archive.read_bytes()))
    assert_refused(archive, destination, UnpackError, "cannot unpack", words)


def test_a_member_name_cannot_drive_the_terminal(tmp_path: Path, destination: Path) -> None:
    name = "\x1b[2J\x1b]0;pwned\x07\u202e/../../evil"
    archive = write_tar(tmp_path / "escape.tar", [file(name)], bytes)
    error = assert_refused(archive, destination, UnsafeArchive, "\\x1b[2J\\x1b]0;pwned\\x07")
    assert "\\u202e" in str(error)


def test_a_very_long_member_name_is_cut_in_the_message(tmp_path: Path, destination: Path) -> None:
    archive = write_tar(tmp_path / "long.tar", [file("../" + "x" * 4000)], bytes)
    error = assert_refused(archive, destination, UnsafeArchive, "(3703 more characters)")
    assert len(str(error)) < 500


@pytest.mark.parametrize("kind", [*TAR_FORMATS, "zip"])
def test_a_truncated_archive_is_corrupt(kind: str, tmp_path: Path, destination: Path) -> None:
    members = [file("tool/a.bin", os.urandom(200_000)), file("tool/b.bin", os.urandom(50_000))]
    archive = write_archive(tmp_path / "cut", kind, members)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    assert_refused(archive, destination, CorruptArchive, "corrupt archive")


def test_a_pre_posix_tar_without_magic_is_recognised(tmp_path: Path, destination: Path) -> None:
    block = bytearray(tar_bytes([file("old.txt", b"v7")]))
    block[257:265] = bytes(8)  # no "ustar" magic nor version, as a v7 tar writes
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block[:512])
    archive = tmp_path / "old.tar"
    archive.write_bytes(bytes(block))
    unpack_archive(archive, directory=destination)
    assert (destination / "old.txt").read_bytes() == b"v7"


def test_what_the_filesystem_refuses_is_one_line_naming_the_member(
    tmp_path: Path, destination: Path
) -> None:
    archive = write_tar(tmp_path / "t.tar", [file("tool/a"), file("tool/" + "b" * 300)], bytes)
    assert_refused(archive, destination, UnpackError, "cannot write member 'tool/bbb", "too long")


def test_a_missing_archive_or_destination_is_one_line(tmp_path: Path, destination: Path) -> None:
    with pytest.raises(UnpackError, match=r"^gone\.tar: cannot read: No such file"):
        unpack_archive(tmp_path / "gone.tar", directory=destination)
    archive = write_tar(tmp_path / "t.tar", [file("a")], bytes)
    with pytest.raises(UnpackError, match=r"^t\.tar: cannot unpack into .*: No such file"):
        unpack_archive(archive, directory=tmp_path / "nowhere")


def test_a_compressed_file_that_is_not_a_tar_is_corrupt(tmp_path: Path, destination: Path) -> None:
    archive = tmp_path / "notes.gz"
    archive.write_bytes(gzip.compress(b"just some text\n" * 100))
    assert_refused(archive, destination, CorruptArchive, "corrupt archive")


@pytest.mark.parametrize("content", [b"", b"#!/bin/sh\n", os.urandom(4096)])
def test_an_unknown_format_is_refused(content: bytes, tmp_path: Path, destination: Path) -> None:
    archive = tmp_path / "tool.tar.gz"  # the name is not what decides
    archive.write_bytes(content)
    assert_refused(archive, destination, UnknownArchive, "not an archive")


@pytest.mark.parametrize("kind", ["tar.zst", "zip"])
def test_a_decompression_bomb_stops_at_the_byte_limit(
    kind: str, tmp_path: Path, destination: Path
) -> None:
    archive = write_archive(tmp_path / "bomb", kind, [file("zeros", bytes(5_000_000))])
    assert archive.stat().st_size < 10_000
    assert_refused(archive, destination, ArchiveTooLarge, "1000000 bytes", max_bytes=1_000_000)
    unpack_archive(archive, directory=destination, max_bytes=6_000_000)
    assert (destination / "zeros").stat().st_size == 5_000_000


def test_a_member_is_refused_on_its_declared_size_before_any_of_it_is_read(
    tmp_path: Path, destination: Path
) -> None:
    archive = write_tar(tmp_path / "big.tar", [file("big", os.urandom(3_000_000))], bytes)
    archive.write_bytes(archive.read_bytes()[:600_000])  # cut short: reading would fail
    assert_refused(archive, destination, ArchiveTooLarge, "1000000 bytes", max_bytes=1_000_000)


def test_tar_headers_count_towards_the_byte_limit(tmp_path: Path, destination: Path) -> None:
    # A pax header is read into memory whole: its size is bounded like data.
    archive = write_tar(tmp_path / "names.tar.xz", [file("n" * 2_000_000)], lzma.compress)
    assert_refused(archive, destination, ArchiveTooLarge, "bytes", max_bytes=1_000_000)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_too_many_members_are_refused(kind: str, tmp_path: Path, destination: Path) -> None:
    members = [file(f"tool/{index}") for index in range(30)]
    archive = write_archive(tmp_path / "many", kind, members)
    assert_refused(archive, destination, ArchiveTooLarge, "more than 20 members", max_members=20)


def test_an_interrupt_during_extraction_leaves_nothing(
    tmp_path: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [file(f"tool/{index}") for index in range(10)]
    archive = write_tar(tmp_path / "t.tar.gz", members, gzip.compress)
    calls = []

    def interrupted(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        calls.append(member.name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return tarfile.data_filter(member, path)

    monkeypatch.setattr(tarfile, "data_filter", interrupted)
    before = listing(destination)
    with pytest.raises(KeyboardInterrupt):
        unpack_archive(archive, directory=destination)
    assert listing(destination) == before


def test_an_interrupt_while_placing_puts_every_entry_back(
    tmp_path: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [file("notes.txt", b"new"), file("shortcut", b"new"), file("tool/new.txt")]
    archive = write_tar(tmp_path / "t.tar", members, bytes)
    rename = os.rename
    renames: list[str] = []

    def interrupted(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        renames.append(str(target))
        if len(renames) == 6:  # "tool" renamed aside, the new one not yet in
            raise KeyboardInterrupt
        rename(source, target)

    monkeypatch.setattr(os, "rename", interrupted)
    before = listing(destination)
    with pytest.raises(KeyboardInterrupt):
        unpack_archive(archive, directory=destination)
    monkeypatch.undo()
    assert listing(destination) == before


# The property: whatever names and link targets an archive has, unpacking either
# refuses it (leaving the folder as it was) or writes only things that resolve inside.
_segments = st.sampled_from(["a", "b", "a", "b", "..", "."])
_paths = st.lists(_segments, min_size=1, max_size=3).map("/".join)
_oddities = st.sampled_from(["/a", "\\a", "c\\..", "a//b", "a/", ""])
_kinds = st.sampled_from(["symlink", "file", "dir", "symlink", "file", "hardlink"])
_members = st.lists(
    st.builds(
        Member,
        name=st.one_of(_paths, _paths, _paths, _oddities),
        kind=_kinds,
        target=st.one_of(_paths, _paths, _paths, _oddities),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(members=_members)
def test_nothing_is_ever_written_outside_the_destination(members: list[Member]) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        directory = root / "destination"
        directory.mkdir()
        (directory / "keep").write_text("keep")
        archive = write_tar(root / "random.tar", members, bytes)
        around = sorted(path.name for path in root.iterdir())
        before = listing(directory)
        try:
            unpack_archive(archive, directory=directory)
        except UnpackError:
            assert listing(directory) == before
        inside = os.path.realpath(directory)
        for path in _walk(directory):
            resolved = where_the_kernel_goes(path)
            assert resolved is None or os.path.commonpath([resolved, inside]) == inside, path
        assert sorted(path.name for path in root.iterdir()) == around
        assert not [path for path in directory.iterdir() if path.name.startswith(STAGING_PREFIX)]


def where_the_kernel_goes(path: str, hops: int = 0) -> str | None:
    """Where opening `path` leads, every symlink followed (None for a loop).

    Not os.path.realpath: on a loop it returns a path made of the rest of a link's
    target, which may be anywhere. A ``..`` after a missing name is taken
    lexically, where the kernel would fail: a stricter oracle.
    """
    head = "/"
    rest = [part for part in path.split("/") if part not in ("", ".")]
    for index, part in enumerate(rest):
        if part == "..":
            head = os.path.dirname(head)
        elif os.path.islink(os.path.join(head, part)):
            if hops == 40:
                return None
            target = os.readlink(os.path.join(head, part))
            return where_the_kernel_goes(os.path.join(head, target, *rest[index + 1 :]), hops + 1)
        else:
            head = os.path.join(head, part)
    return head


def _walk(directory: Path) -> Iterator[str]:
    for top, folders, files in os.walk(directory):
        for name in folders + files:
            yield os.path.join(top, name)
