"""No path reaches the renderer's state or anything outside a view."""

from __future__ import annotations

import os

from indexer.site.job import SiteJob
from tests.system import System, Uploaded

PROBES = [
    "/state/position.json",
    "/f/../state/position.json",
    "/f/%2e%2e/state/position.json",
    "/f/..%2fstate%2fposition.json",
    "/assets/..%2F..%2Fstate/position.json",
    "/internal/../state/position.json",
    "/internal/%2e%2e/state/position.json",
    "/internal/..%2fstate/position.json",
    "/files/%2e%2e%2f%2e%2e%2fstate/position.json",
    "/f//state",
    "/assets/.%2e/.%2e/state/position.json",
    "/b/..;/state/position.json",
    "/u/%00",
    "/files/\\..\\state",
]


def test_nothing_outside_the_view(system: System) -> None:
    system.upload([Uploaded("a.tar.xz", os.urandom(64), "public")])
    system.indexer.run_once(check=False)
    SiteJob(system.regions.index).refresh()
    for path in PROBES:
        answer = system.client.get(path)
        assert answer.status_code in (404, 401, 400, 307, 308), (path, answer.status_code)
        assert b'"feed"' not in answer.content, path
