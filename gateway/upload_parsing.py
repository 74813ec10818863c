"""Parsing a ``POST /upload`` body: the legacy shape and messages, checked before any write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.bodies import is_text, parse_json
from gateway.errors import BadRequest
from gateway.lookup import INVALID_DIGEST
from indexer.digests import ALGORITHM, is_valid_digest
from indexer.intake import BatchFile
from indexer.schema import VISIBILITIES

MAX_BODY = 1024 * 1024
MAX_FILES = 1000
MAX_SIZE = 5 * 1024**3  # the most one signed PUT can carry on S3
MAX_MESSAGE = 65536
MAX_FILENAME = 255


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A validated ``POST /upload`` body."""

    message: str
    files: dict[str, BatchFile]

    @property
    def visibilities(self) -> list[str]:
        return sorted({entry.visibility for entry in self.files.values()})

    def names_by_digest(self) -> dict[str, tuple[str, ...]]:
        """Every digest of the batch with the names it was given (one digest, many names)."""
        names: dict[str, list[str]] = {}
        for name, entry in sorted(self.files.items()):
            names.setdefault(entry.digest, []).append(name)
        return {digest: tuple(found) for digest, found in names.items()}


def parse_upload(body: bytes) -> UploadRequest:
    """Validate a ``POST /upload`` body, with the legacy service's messages."""
    data: Any = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object")
    if "author" in data:
        raise BadRequest("Author must NOT be specified for upload.")
    unknown = sorted(set(data) - {"message", "files"})
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0][:50]!r}")
    message = data.get("message")
    if not isinstance(message, str) or not message.strip():
        raise BadRequest("message must be non-empty")
    if len(message) > MAX_MESSAGE:
        raise BadRequest(f"message must be at most {MAX_MESSAGE} characters")
    if not is_text(message, multiline=True):
        raise BadRequest("message must be text without control characters")
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise BadRequest("a batch must include at least one file")
    if len(files) > MAX_FILES:
        raise BadRequest(f"a batch may include at most {MAX_FILES} files")
    parsed = {name: _parse_file(name, entry) for name, entry in files.items()}
    _check_consistent(parsed)
    return UploadRequest(message, parsed)


def _parse_file(name: str, entry: Any) -> BatchFile:
    shown = repr(name[:100])
    if (
        not name
        or len(name) > MAX_FILENAME
        or any(character in name for character in "/\\")
        or name in (".", "..")
        or not name.isprintable()
        or not is_text(name)
    ):
        raise BadRequest(f"Invalid filename {shown}: no /, \\ or control characters")
    if not isinstance(entry, dict):
        raise BadRequest(f"Invalid entry for {shown}: must be an object")
    unknown = sorted(set(entry) - {"size", "digest", "algorithm", "visibility"})
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0][:50]!r} for {shown}")
    if entry.get("algorithm") != ALGORITHM:
        raise BadRequest("`sha512` is the only allowed digest algorithm")
    digest = entry.get("digest")
    if not isinstance(digest, str) or not is_valid_digest(digest):
        raise BadRequest(INVALID_DIGEST)
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"Invalid size for {shown}: must be a non-negative integer")
    if size > MAX_SIZE:
        raise BadRequest(f"{shown} is larger than 5 GiB, the most one upload can hold")
    visibility = entry.get("visibility")
    if visibility not in VISIBILITIES:
        raise BadRequest(f"Invalid visibility for {shown}: must be public or internal")
    return BatchFile(size=size, digest=digest, algorithm=ALGORITHM, visibility=visibility)


def _check_consistent(files: dict[str, BatchFile]) -> None:
    """One digest named twice in a batch must have one size and one visibility."""
    seen: dict[str, BatchFile] = {}
    for name, entry in files.items():
        first = seen.setdefault(entry.digest, entry)
        check_against(name, entry, first.size, first.visibility)


def check_against(name: str, entry: BatchFile, size: int, visibility: str) -> None:
    """400 with the legacy message when `entry` disagrees with a file's size or visibility."""
    if visibility != entry.visibility:
        raise BadRequest("Cannot change already existing file's visibility level.")
    if size != entry.size:
        raise BadRequest(f"Size mismatch for {name}")
