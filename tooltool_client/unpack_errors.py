"""The errors of :mod:`tooltool_client.unpack`, each a one-line message safe to print.

Archive and member names are untrusted text that ends up on a terminal: every
message escapes control and other non-printable characters (``\\x1b``,
``\\u202e``, undecodable bytes as ``\\udcXX``) so a name cannot move the cursor,
recolour the screen or hide part of the line; a very long name is cut.
"""

from __future__ import annotations

from tooltool_client.errors import shown


class UnpackError(Exception):
    """An archive could not be unpacked; nothing of it was left in the destination folder."""

    def __init__(self, archive: str, message: str) -> None:
        super().__init__(f"{shown(archive)}: {message}")
        self.archive = archive
        self.message = message  # without the archive's name


class UnknownArchive(UnpackError):
    """The file is none of the formats unpacked (tar, plain or compressed, and zip)."""

    def __init__(self, archive: str) -> None:
        super().__init__(
            archive, "not an archive (tar, tar.gz, tar.bz2, tar.xz, tar.zst or zip): not unpacked"
        )


class UnsafeArchive(UnpackError):
    """A member would write outside the destination folder, or is a device or other special file."""

    def __init__(self, archive: str, member: str, reason: str) -> None:
        super().__init__(archive, f"refused, nothing unpacked: member '{shown(member)}' {reason}")
        self.member = member
        self.reason = reason


class ArchiveTooLarge(UnpackError):
    """The archive has more members or more uncompressed bytes than allowed."""

    def __init__(self, archive: str, reason: str) -> None:
        super().__init__(archive, f"refused, nothing unpacked: {reason}")
        self.reason = reason


class CorruptArchive(UnpackError):
    """The archive is truncated or not valid data of its format."""

    def __init__(self, archive: str, detail: str, member: str | None = None) -> None:
        where = "" if member is None else f" at member '{shown(member)}'"
        super().__init__(archive, f"corrupt archive{where}: {shown(detail)}")
        self.member = member
