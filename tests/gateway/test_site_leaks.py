"""The leak crawl: everything the public site serves, crawled through the gateway after
uploads of public and internal files, names nothing internal; and again after a public
file is made internal, once one pass has run."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from indexer.job import Indexer
from tests.gateway.test_manage import patch
from tests.system import System, Uploaded

LINK = re.compile(rb"""(?:href|src)="([^"]+)\"""")


def crawl(system: System) -> dict[str, bytes]:
    """Every page reachable by links from ``/``, and every object of the public site."""
    seen: dict[str, bytes] = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        answer = system.client.get(path)
        assert answer.status_code == 200, path
        seen[path] = answer.content
        if answer.headers["content-type"].startswith("text/html"):
            for link in LINK.findall(answer.content):
                target = urlsplit(urljoin(f"http://t{path}", link.decode()))
                if target.netloc == "t" and not target.path.startswith("/internal"):
                    todo.append(target.path)
    store = system.regions.index
    for info in store.list("site/public/"):
        path = "/" + info.key.removeprefix("site/public/")
        answer = system.client.get(path)
        assert answer.status_code == 200, path
        seen[path] = answer.content
    return seen


def texts(pages: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """Each page's bytes, and those of the compressed search index chunks unpacked."""
    for path, data in pages.items():
        yield path, data
        if data[:2] == b"\x1f\x8b":
            yield f"{path} (unpacked)", gzip.decompress(data)


def assert_absent(pages: dict[str, bytes], secrets: list[str]) -> None:
    for path, data in texts(pages):
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} in {path}"


def test_the_public_site_names_nothing_internal(system: System) -> None:
    system.indexer = Indexer(system.regions, render_site=True)  # as deployed: passes render
    public = Uploaded("gcc-13.2-linux64.tar.xz", os.urandom(300), "public")
    internal = Uploaded("nda-sdk-4.1.zip", os.urandom(200), "internal")
    mixed_public = Uploaded("cmake-3.28.tar.gz", os.urandom(250), "public")
    mixed_internal = Uploaded("signing-keys-tool.zip", os.urandom(150), "internal")
    system.upload([public], message="gcc for everyone")
    system.upload([internal], message="the nda sdk, keep it quiet", client_id="admin")
    system.upload([mixed_public, mixed_internal], message="a mixed batch message")
    system.indexer.run_once(check=False)
    pages = crawl(system)
    everything = b"\n".join(data for _, data in texts(pages))
    assert public.digest.encode() in everything
    assert b"gcc for everyone" in everything
    assert mixed_public.name.encode() in everything  # a public file of a mixed batch
    assert_absent(
        pages,
        [
            internal.digest,
            internal.digest[:16],
            internal.name,
            "the nda sdk, keep it quiet",
            "admin",
            mixed_internal.digest[:16],
            mixed_internal.name,
            "a mixed batch message",  # the batch names an internal file
        ],
    )
    flip = [{"op": "set_visibility", "visibility": "internal", "reason": "licence"}]
    assert patch(system, public.digest, flip).status_code == 200
    system.indexer.run_once(check=False)
    assert_absent(
        crawl(system), [public.digest, public.digest[:16], public.name, "gcc for everyone"]
    )
