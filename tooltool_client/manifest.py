"""The manifest (``manifest.tt``): a JSON list of file records, read and written as the
legacy client does.

A record names a file in the manifest's folder by ``filename``, ``size``, ``digest``
and ``algorithm`` (sha512 only), with optional ``unpack``, ``visibility``,
``version`` and ``setup``. Keys this client does not know are kept, in order, and
written back by ``add``. ``setup`` is kept and never run: a manifest is data.

``unpack`` is read as the legacy client read it, by its truth: manifests in use
say ``"unpack": "True"`` (mozharness's emulator manifests), and the legacy client
unpacked on any true value. ``add`` writes it back as ``true``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tooltool_client.errors import InvalidManifest
from tooltool_client.staging import PREFIX

ALGORITHM = "sha512"
DEFAULT_NAME = "manifest.tt"
VISIBILITIES = ("internal", "public")
_DIGEST = re.compile(r"[0-9a-f]{128}")
# C0 and C1 controls (a terminal obeys both) and the bidirectional overrides and isolates
# (they reorder what is shown after them): a name is printed on every line about it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The legacy writer's key order; other keys follow in the order they were read.
_KNOWN = ("filename", "size", "algorithm", "digest", "unpack", "version", "visibility", "setup")


@dataclass(frozen=True)
class FileRecord:
    """One file of a manifest."""

    filename: str
    size: int
    digest: str
    algorithm: str = ALGORITHM
    unpack: bool = False
    visibility: str | None = None
    version: str | None = None
    setup: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> FileRecord:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The record as the legacy client writes it: optional keys only when set."""
        out: dict[str, Any] = {
            "filename": self.filename,
            "size": self.size,
            "algorithm": self.algorithm,
            "digest": self.digest,
        }
        if self.unpack:
            out["unpack"] = True
        if self.version:
            out["version"] = self.version
        if self.visibility is not None:
            out["visibility"] = self.visibility
        if self.setup is not None:
            out["setup"] = self.setup
        out.update(self.extra)
        return out


def check_filename(name: object) -> str:
    """A file name of the manifest's folder: no path, no control characters."""
    if not isinstance(name, str) or not name:
        raise InvalidManifest("a record's filename must be a non-empty string")
    if "/" in name or "\\" in name or name in (".", ".."):
        # The legacy client refuses path information the same way.
        raise InvalidManifest(f"the filename {name!r} contains path information")
    if _CONTROL.search(name):
        raise InvalidManifest(f"the filename {name!r} contains control characters")
    if name.startswith(PREFIX):
        # The names of a fetch's own part, lock and temporary files in the same folder: a
        # file placed there would be taken for one, or removed as one.
        raise InvalidManifest(f"the filename {name!r} starts with {PREFIX!r}, kept for tooltool")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): no file's name
        raise InvalidManifest(f"the filename {name!r} is not valid Unicode") from None
    return name


def check_digest(digest: object) -> str:
    """A lowercase hexadecimal sha512 digest."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidManifest(f"{digest!r} is not a sha512 digest (128 lowercase hex digits)")
    return digest


def record_from_json(raw: object) -> FileRecord:
    """A record from its JSON object; the first problem found is the error."""
    if not isinstance(raw, dict):
        raise InvalidManifest("every entry of a manifest must be a JSON object")
    for key in ("filename", "size", "algorithm", "digest"):
        if key not in raw:
            raise InvalidManifest(f"a record has no {key!r}")
    filename = check_filename(raw["filename"])
    size = raw["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidManifest(f"{filename}: size must be a non-negative integer")
    if raw["algorithm"] != ALGORITHM:
        raise InvalidManifest(f"{filename}: `sha512` is the only allowed digest algorithm")
    unpack = bool(raw.get("unpack", False))  # any true value, as the legacy client read it
    visibility = raw.get("visibility")
    version = raw.get("version")
    setup = raw.get("setup")
    if visibility is not None and visibility not in VISIBILITIES:
        raise InvalidManifest(f"{filename}: visibility must be 'internal' or 'public'")
    for name, value in (("version", version), ("setup", setup)):
        if value is not None and not isinstance(value, str):
            raise InvalidManifest(f"{filename}: {name} must be a string")
    return FileRecord(
        filename=filename,
        size=size,
        digest=check_digest(raw["digest"]),
        unpack=unpack,
        visibility=visibility,
        version=version,
        setup=setup,
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
    )


def parse(text: str | bytes) -> list[FileRecord]:
    """The records of a manifest's text; two records may not share a filename."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidManifest("trying to read invalid manifest file") from None
    if not isinstance(raw, list):
        raise InvalidManifest("a manifest must be a JSON list of file records")
    records = [record_from_json(item) for item in raw]
    seen: set[str] = set()
    for record in records:
        if record.filename in seen:
            raise InvalidManifest(f"the filename {record.filename!r} is listed twice")
        seen.add(record.filename)
    return records


def load(path: Path) -> list[FileRecord]:
    """The manifest at `path`, or :class:`InvalidManifest` saying why not."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InvalidManifest(f"manifest file '{path}' does not exist") from None
    except OSError as exc:
        raise InvalidManifest(f"manifest file '{path}' cannot be read: {exc.strerror}") from None
    try:
        return parse(text)
    except InvalidManifest as exc:
        raise InvalidManifest(f"failed to load manifest file at '{path}': {exc}") from None


def dumps(records: Iterable[FileRecord]) -> str:
    """The legacy client's layout: two-space indent, ``": "`` after keys."""
    return json.dumps([record.to_json() for record in records], indent=2, separators=(",", ": "))


def save(path: Path, records: Sequence[FileRecord]) -> None:
    """Write the manifest whole: a temporary file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)  # left by a killed run, or planted
        # Created here ("x"): never written through a symlink planted at its name.
        with open(temporary, "x", encoding="utf-8") as out:
            out.write(dumps(records))
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InvalidManifest(f"manifest file '{path}' cannot be written: {exc.strerror}") from None
