"""Two processes taking turns (two gateways' embedded indexers under the lease, or a watch
loop and scheduled runs): each loads the saved copy, which tells it what every page shows,
and renders only the pages a change touches."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from indexer.site import job as site_job
from indexer.site.job import SiteJob
from tests.recording_store import RecordingStore
from tests.system import System, Uploaded


def test_taking_turns_renders_only_what_changed(system: System, monkeypatch: Any) -> None:
    files = [Uploaded(f"t{n}.tar.xz", os.urandom(64), "public") for n in range(200)]
    for n in range(0, 200, 20):
        system.upload(files[n : n + 20], message=f"b{n}")
    system.indexer.run_once(check=False)
    recording = RecordingStore(system.regions.index)
    jobs = [SiteJob(recording), SiteJob(recording)]
    jobs[0].refresh()
    jobs[1].refresh()
    rendered: list[int] = [0]
    real = site_job.render

    def counted(env: Any, spec: Any) -> bytes:
        rendered[0] += hasattr(spec, "template")  # pages, not the files of the search bundle
        return real(env, spec)

    monkeypatch.setattr(site_job, "render", counted)
    costs = []
    for turn in range(4):
        system.upload([Uploaded(f"new{turn}.tar.xz", os.urandom(64), "public")])
        system.indexer.run_once(check=False)
        recording.calls.clear()
        rendered[0] = 0
        jobs[turn % 2].refresh()
        gets = Counter(
            key.split("/")[1] if key.startswith("site/") else key.split("/")[0]
            for key in recording.keys("get")
        )
        costs.append((rendered[0], len(recording.keys("get")), dict(gets)))
    same = SiteJob(recording)
    same.refresh()
    system.upload([Uploaded("same.tar.xz", os.urandom(64), "public")])
    system.indexer.run_once(check=False)
    recording.calls.clear()
    rendered[0] = 0
    same.refresh()
    assert all(pages < 40 for pages, _, _ in costs), costs
