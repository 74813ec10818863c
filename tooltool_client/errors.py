"""The client's errors: one hierarchy, each printed as one line by the command line."""

from __future__ import annotations

_SHOWN_LENGTH = 300


def shown(text: str) -> str:
    """`text` with every non-printable character written as a Python escape, cut if long:
    what a server, a URL or an archive says reaches a terminal, where an escape sequence
    could move the cursor, recolour the screen or hide part of the line."""
    cut = text[:_SHOWN_LENGTH]
    escaped = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in cut
    )
    return escaped if cut == text else f"{escaped}... ({len(text) - len(cut)} more characters)"


class ClientError(Exception):
    """Something the command could not do; its message is shown as is."""


class InvalidManifest(ClientError):
    """The manifest is missing, not JSON, or lists a malformed record."""


class UsageError(ClientError):
    """The command line asks for something that cannot be done (a missing option)."""


class CredentialsError(ClientError):
    """The authentication file or the Taskcluster variables cannot be used."""


class ServerError(ClientError):
    """A server answered with an error, or could not be reached."""


class TransportError(ServerError):
    """The connection failed: refused, reset, timed out, or closed mid-answer."""


class ProblemAnswer(ServerError):
    """The server refused the request with a status (and, from ours, a problem JSON body)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if detail else str(status))
        self.status = status
        self.detail = detail


class IntegrityError(ClientError):
    """Bytes did not match the manifest's size or digest."""


class CacheError(ClientError):
    """The cache folder cannot be used (not writable, full)."""


class StagingError(ClientError):
    """A part file or its lock cannot be written (a folder not writable, a disk full)."""


def unwritable(path: object, exc: OSError) -> StagingError:
    """The error for a local file that cannot be written, with the system's reason."""
    return StagingError(f"'{path}' cannot be written: {exc.strerror or exc}")
