"""Random sequences of operations, a pass (rendering) after each: the followed site must
be, byte for byte, what a full render makes."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.importer import import_file, record_import
from indexer.intake import next_batch_id
from indexer.job import Indexer
from tests.gateway.test_manage import patch
from tests.indexer.test_site_faults import diff, full_render
from tests.indexer.test_site_incremental import site_objects
from tests.system import System, Uploaded

SEEDS = [int(seed) for seed in os.environ.get("SITE_SEEDS", "1,2,3").split(",")]
STEPS = int(os.environ.get("SITE_STEPS", "20"))
RESTARTS = os.environ.get("SITE_RESTARTS", "1") == "1"
SKIP = float(os.environ.get("SITE_SKIP", "0.3"))  # the chance a step runs no pass after it


@pytest.mark.parametrize("seed", SEEDS)
def test_random_sequences(system: System, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - a sequence to replay, not a secret
    store = system.regions.index
    system.indexer = Indexer(system.regions, render_site=True)
    known: list[Uploaded] = []
    log: list[str] = []

    def fresh(visibility: str) -> Uploaded:
        return Uploaded(f"f{rng.randrange(10**6)}.tar.xz", rng.randbytes(40), visibility)

    for step in range(STEPS):
        ops = ["upload", "mixed", "pending", "flip", "delete", "same", "rename", "import"]
        if RESTARTS:
            ops.append("restart")
        op = rng.choice(ops)
        if op in ("flip", "delete", "same", "rename") and not known:
            op = "upload"
        if op == "upload":
            item = fresh(rng.choice(["public", "internal"]))
            system.upload([item], message=f"m{step}", client_id="admin")
            known.append(item)
        elif op == "mixed":
            items = [fresh("public"), fresh("internal")]
            system.upload(items, message=f"mixed {step}", client_id="admin")
            known.extend(items)
        elif op == "pending":
            assert system.post([fresh("public")], message=f"pending {step}").status_code == 200
        elif op == "flip":
            item = rng.choice(known)
            to = rng.choice(["public", "internal"])
            patch(system, item.digest, [{"op": "set_visibility", "visibility": to}])
        elif op == "delete":
            patch(system, rng.choice(known).digest, [{"op": "delete_instances", "reason": "r"}])
        elif op in ("same", "rename"):
            item = rng.choice(known)
            name = item.name if op == "same" else f"renamed{step}-{item.name}"
            again = Uploaded(name, item.data, item.visibility)
            response = system.post([again], message=f"again {step}", client_id="admin")
            if response.status_code == 200:
                result = response.json()["result"]
                for entry in result["files"].values():
                    if "put_url" in entry:
                        system.put(entry["put_url"], item.data)
                        system.complete(entry["digest"])
        elif op == "import":
            path = tmp_path / f"imp{step}.bin"
            path.write_bytes(rng.randbytes(40))
            batch = next_batch_id(store)
            when = time.time()
            args: dict[str, Any] = {"message": "imp", "author": "op"}
            args["clock"] = lambda when=when: when
            done = import_file(system.regions, path, visibility="public", batch_id=batch, **args)
            record_import(system.regions, batch, [done], visibility="public", **args)
            known.append(Uploaded(path.name, path.read_bytes(), "public"))
        elif op == "restart":
            system.indexer = Indexer(system.regions, render_site=True)
        log.append(op)
        if rng.random() < SKIP and step < STEPS - 1:
            continue
        log.append("pass")
        system.indexer.run_once(check=rng.random() < 0.2)
        differing = diff(site_objects(store), full_render(store))
        assert differing == [], (" ".join(log), differing[:4])
