"""Writing a rendered site into the store: only the pages that changed.

Each view lives under ``site/<view>/``. The publisher knows the sha256 of
every page it wrote, from manifests kept outside the site, one per group of
pages (``site/state/<view>/manifest/<group>.json``: the pages of files whose
digest starts with ``abc`` are one group, and so on), so that a change
rewrites the manifests of the groups it touched, not one naming every page.

A publish that changes anything first writes a journal naming the groups it
will touch, then writes the pages that differ, deletes the ones that went,
rewrites those groups' manifests and deletes the journal. One killed midway
leaves the journal: the next publish trusts nothing of those groups (it lists
what the store holds of them, writes every page and deletes every other
object), so a page a killed publish wrote or failed to delete never outlives
it. A publish that changes nothing writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath

from indexer.stores import ObjectNotFound, Store
from indexer.strict_json import StrictJsonError, loads_strict

logger = logging.getLogger(__name__)

SITE_PREFIX = "site/"
STATE_PREFIX = f"{SITE_PREFIX}state/"
WRITERS = 8  # pages written at once
UNKNOWN = ""  # the hash of an object a killed publish may have left in any state
# How many characters after the section name make a group's prefix.
GROUPS = {
    "f/": 3,
    "b/": 3,
    "u/": 2,
    "files/": 2,
    "batches/": 2,
    "pagefind/fragment/": 5,
    "pagefind-archive/fragment/": 5,
}


def site_key(view: str, path: str) -> str:
    return f"{SITE_PREFIX}{view}/{path}"


# Named rather than guessed where the platform's tables may differ or know nothing. The
# search bundle's own formats are gzipped and unzipped by Pagefind's scripts: they are
# sent as they are stored, with no Content-Encoding.
_TYPES = {
    ".pf_meta": "application/octet-stream",
    ".pf_index": "application/octet-stream",
    ".pf_fragment": "application/octet-stream",
    ".pf_filter": "application/octet-stream",
    ".pagefind": "application/octet-stream",  # the search's WebAssembly, gzipped
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
}


def content_type(path: str) -> str:
    suffix = PurePosixPath(path).suffix
    guessed = _TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def group(path: str) -> str:
    """The group a page belongs to: a prefix of its path."""
    for section, chars in GROUPS.items():
        if path.startswith(section):
            return path[: len(section) + chars]
    directory, slash, _ = path.rpartition("/")
    return directory + slash if slash else path


@dataclass
class Published:
    written: int = 0
    deleted: int = 0
    unchanged: int = 0


class Publisher:
    """Keeps ``site/<view>/`` holding exactly the pages it is given, for one view."""

    def __init__(self, store: Store, view: str) -> None:
        self._store = store
        self._view = view
        self._hashes: dict[str, str] | None = None  # path -> sha256; None: not read yet
        self._groups: dict[str, set[str]] = defaultdict(set)  # group -> its paths
        self._checked = False  # whether the groups no manifest names were looked for

    def forget(self) -> None:
        """Read the manifests again before the next publish (another process wrote)."""
        self._hashes = None
        self._checked = False

    def publish(
        self,
        paths: Collection[str],
        render: Callable[[str], bytes],
        *,
        unchanged: Collection[str] = (),
        drop: Collection[str] = (),
    ) -> Published:
        """Make the view hold a page at each of `paths`, with the bytes `render` makes of
        a path; a path in `unchanged` is rendered only when the store's copy is in doubt
        (its inputs are those of the page written last)."""
        hashes = self._known()
        if not self._checked:
            self._doubt_unnamed(paths)
        result = Published()
        changed: dict[str, tuple[bytes, str]] = {}
        for path in sorted(paths):
            if path in unchanged and hashes.get(path, UNKNOWN) != UNKNOWN:
                result.unchanged += 1
                continue
            data = render(path)
            digest = hashlib.sha256(data).hexdigest()
            if hashes.get(path) == digest:
                result.unchanged += 1
            else:
                changed[path] = (data, digest)
        # What the view no longer holds: what the manifests name, and what the caller
        # knows left it (a page the manifests lost track of is deleted all the same).
        gone = sorted((hashes.keys() | set(drop)) - set(paths))
        if not changed and not gone:
            return result
        touched = sorted({group(path) for path in [*changed, *gone]})
        self._put(self._journal_key(), json.dumps(touched).encode())
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            # A request each: several at once, as a store's latency is most of their cost.
            for _ in pool.map(self._write, changed.items()):
                result.written += 1
            for _ in pool.map(self._store.delete, [site_key(self._view, p) for p in gone]):
                result.deleted += 1
        for path, (_, digest) in changed.items():
            hashes[path] = digest
            self._groups[group(path)].add(path)
        for path in gone:
            hashes.pop(path, None)
            self._groups[group(path)].discard(path)
        for name in touched:
            members = {path: hashes[path] for path in self._groups.get(name, ())}
            if members:
                self._put(self._manifest_key(name), _dump(members))
            else:
                self._groups.pop(name, None)
                self._store.delete(self._manifest_key(name))
        self._store.delete(self._journal_key())
        return result

    def _doubt_unnamed(self, paths: Collection[str]) -> None:
        """Pages of groups no manifest names (one lost, or a layout before manifests):
        whatever the store holds of them is in doubt."""
        for name in sorted({group(path) for path in paths} - self._groups.keys()):
            for info in self._store.list(site_key(self._view, name)):
                path = info.key.removeprefix(site_key(self._view, ""))
                if group(path) == name and self._hashes is not None:
                    self._hashes.setdefault(path, UNKNOWN)
                    self._groups[name].add(path)
        self._checked = True

    def _write(self, item: tuple[str, tuple[bytes, str]]) -> None:
        path, (data, _) = item
        self._store.put(site_key(self._view, path), data, content_type=content_type(path))

    # -- what the store holds ----------------------------------------------

    def _known(self) -> dict[str, str]:
        if self._hashes is None:
            self._hashes = self._read()
            self._groups = defaultdict(set)
            for path in self._hashes:
                self._groups[group(path)].add(path)
        return self._hashes

    def _read(self) -> dict[str, str]:
        """Every page the manifests name, and every object of the groups a killed publish
        left in doubt (or whose manifest is unreadable) as UNKNOWN."""
        hashes: dict[str, str] = {}
        doubtful: set[str] = set(self._journal())
        prefix = self._manifest_key("")
        manifests = list(self._store.list(prefix))
        if not manifests:  # never published (or by an older layout): whatever is there
            doubtful.add("")
        for info in manifests:
            name = _unquote(info.key.removeprefix(prefix).removesuffix(".json"))
            try:
                raw, _ = self._store.get(info.key)
                data = loads_strict(raw)
                if not isinstance(data, dict):
                    raise TypeError("not an object")
                hashes.update({str(path): str(digest) for path, digest in data.items()})
            except ObjectNotFound:
                continue
            except (StrictJsonError, TypeError):
                logger.error("%s is unreadable: its pages are written again", info.key)
                doubtful.add(name)
        for name in sorted(doubtful):  # "" (an unreadable journal): the whole view
            for path in [path for path in hashes if name in ("", group(path))]:
                del hashes[path]
            for info in self._store.list(site_key(self._view, name)):
                path = info.key.removeprefix(site_key(self._view, ""))
                if name in ("", group(path)):
                    hashes[path] = UNKNOWN
        return hashes

    def _journal(self) -> list[str]:
        try:
            raw, _ = self._store.get(self._journal_key())
            data = loads_strict(raw)
        except ObjectNotFound:
            return []
        except StrictJsonError:
            data = None
        if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
            logger.error("%s is unreadable: every page is written again", self._journal_key())
            return [""]  # the whole view's prefix
        return data

    def _journal_key(self) -> str:
        return f"{STATE_PREFIX}{self._view}/journal.json"

    def _manifest_key(self, name: str) -> str:
        """The key of a group's manifest ("": the prefix of them all)."""
        return f"{STATE_PREFIX}{self._view}/manifest/" + (f"{_quote(name)}.json" if name else "")

    def _put(self, key: str, data: bytes) -> None:
        self._store.put(key, data, content_type="application/json")


def _dump(data: Mapping[str, str]) -> bytes:
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":")).encode()


def _quote(name: str) -> str:
    return name.replace("/", "+")  # no page path holds a plus


def _unquote(name: str) -> str:
    return name.replace("+", "/")
