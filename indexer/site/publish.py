"""Writing a rendered site into the store: only the pages that changed.

Each view lives under ``site/<view>/``, with ``site/<view>/manifest.json``
naming every page and the sha256 of its bytes. Publishing compares the new
pages with the manifest: a render that changes nothing writes nothing.
Otherwise the manifest is deleted first, then the pages that differ are
written, the ones that went deleted, and the manifest written last. A
publish killed before the end leaves no manifest, so the next one trusts
nothing: it writes every page and deletes every object of the view that is
not one (a page a killed publish wrote never outlives it).
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
    rendered = dict(pages)
    after = {path: hashlib.sha256(data).hexdigest() for path, data in rendered.items()}
    if before is not None and after == before:
        result.unchanged = len(after)
        return result
    if before is None:  # no manifest: nothing in the store can be trusted
        present = {
            info.key.removeprefix(site_key(view, "")) for info in store.list(site_key(view, ""))
        }
        before = {}
    else:
        present = set(before)
        store.delete(site_key(view, MANIFEST))  # until the end: a killed publish is redone
    for path, data in sorted(rendered.items()):
        if before.get(path) == after[path]:
            result.unchanged += 1
            continue
        store.put(site_key(view, path), data, content_type=content_type(path))
        result.written += 1
    for path in sorted(present - after.keys() - {MANIFEST}):
        store.delete(site_key(view, path))
        result.deleted += 1
    manifest = json.dumps(after, sort_keys=True, separators=(",", ":")).encode()
    store.put(site_key(view, MANIFEST), manifest, content_type="application/json")
    return result


def _manifest(store: Store, view: str) -> dict[str, str] | None:
    """The pages the last publish wrote, with their hashes; None when it is not known."""
    try:
        raw, _ = store.get(site_key(view, MANIFEST))
        data = loads_strict(raw)
    except ObjectNotFound:
        return None
    except StrictJsonError:
        data = None
    if not isinstance(data, dict):
        logger.error("the site manifest of %s is unreadable: every page is written again", view)
        return None
    return {str(path): str(digest) for path, digest in data.items()}
