"""Writing a rendered site into the store: only the pages that changed.

Each view lives under ``site/<view>/``, with ``site/<view>/manifest.json``
naming every page and the sha256 of its bytes. Publishing compares the new
pages with the manifest, writes the pages that differ, deletes the ones that
went, then writes the manifest: a render that changes nothing writes
nothing, and a killed publish is finished by the next (the manifest is
written last).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.stores import ObjectNotFound, Store
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

SITE_PREFIX = "site/"
MANIFEST = "manifest.json"


def site_key(view: str, path: str) -> str:
    return f"{SITE_PREFIX}{view}/{path}"


def content_type(path: str) -> str:
    guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


@dataclass
class Published:
    written: int = 0
    deleted: int = 0
    unchanged: int = 0


def publish(store: Store, view: str, pages: Iterable[tuple[str, bytes]]) -> Published:
    """Make ``site/<view>/`` hold exactly `pages`, writing only what differs."""
    result = Published()
    before = _manifest(store, view)
    after: dict[str, str] = {}
    for path, data in pages:
        digest = hashlib.sha256(data).hexdigest()
        after[path] = digest
        if before.get(path) == digest:
            result.unchanged += 1
            continue
        store.put(site_key(view, path), data, content_type=content_type(path))
        result.written += 1
    for path in sorted(before.keys() - after.keys()):
        store.delete(site_key(view, path))
        result.deleted += 1
    if after != before:
        manifest = json.dumps(after, sort_keys=True, separators=(",", ":")).encode()
        store.put(site_key(view, MANIFEST), manifest, content_type="application/json")
    return result


def _manifest(store: Store, view: str) -> dict[str, str]:
    try:
        raw, _ = store.get(site_key(view, MANIFEST))
        data = loads_strict(raw)
    except ObjectNotFound:
        return {}
    except StrictJsonError:
        logger.error("the site manifest of %s is unreadable: every page is written again", view)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(path): str(digest) for path, digest in data.items()}
