"""The indexer SIGKILLed at random moments, round after round, while uploads, PATCHes and
rebuilds are in flight (issue 11: crashes).

Each round starts one real ``tooltool-indexer`` process (``run``, ``run --no-check``,
``watch`` or ``rebuild``) against a SeaweedFS with two regions, and SIGKILLs it after a
random delay (or lets it end, when it ends first). Meanwhile a ``tooltool-gateway``
process serves an uploader (right bytes, wrong bytes, right then wrong bytes), a
patcher (visibility changes, deletions) and a watcher that downloads every file all
the time and hashes every byte served. Afterwards a clean ``run``, a ``rebuild`` and a
``run`` must end well and leave:

- every file uploaded with the right bytes downloadable from every region, with them,
  at the visibility the last PATCH gave it (unless a PATCH deleted it: 404);
- files uploaded with wrong bytes never downloadable, and listed as failures;
- no unverified byte ever served, no internal file ever served anonymously, no deleted
  file served (what the watcher saw throughout);
- every index object valid against index_schema.json, every catalog shard whole and
  true to the index objects and batch records, every audit record readable, the chain
  whole (``audit --verify`` exits 0), no feed entry unreadable;
- no pending record, staged upload or private copy left, and the lease free.

``TOOLTOOL_CRASH_ROUNDS`` (default 100) sets the rounds, ``TOOLTOOL_CRASH_SEED`` the
seed (printed, with the summary, by every run: ``pytest -s`` shows them). Threads
interleave as the machine schedules them, so a seed replays the same choices and
delays, not the same interleaving.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import StoreSettings, open_regions
from indexer.lease import LEASE_KEY
from indexer.stores import ObjectNotFound
from tests.conftest import SeaweedFS
from tests.crash.actors import Gateway, Patcher, Uploader, Watcher, fetch
from tests.crash.ledger import REPLACED, RIGHT, WRONG, File, Ledger
from tests.crash.store_checks import (
    audit_problems,
    catalog_problems,
    feed_problems,
    index_objects,
    leftovers,
)
from tests.gateway.auth_helpers import clients_file_entries
from tests.test_replicas import gateway_process

pytestmark = pytest.mark.crash

ROUNDS = int(os.environ.get("TOOLTOOL_CRASH_ROUNDS", "100"))
LEASE_SECONDS = 1
REGIONS = ("us-east-1", "us-west-2")
# What a round runs, and how often: frequent passes most, a check, the loop, a rebuild.
COMMANDS = (
    (["run", "--no-check"], 4),
    (["run"], 2),
    (["watch", "--interval", "0.2", "--check-interval", "1"], 2),
    (["rebuild"], 2),
)
WORK = (0.0, 1.0)  # seconds a process works once it holds the lease, before its SIGKILL
# A pass reads every pending record before it verifies the first upload, and forgets
# the uploads it finished at its end: so that kills land at every step of a pass, not
# only in the first reads of a backlog that keeps growing, some passes may finish.
FINISHING = 0.25  # the share of `run` and `rebuild` rounds not killed before they end
FINISH = 60.0  # seconds they get (then they are killed all the same)
INDEXER = str(Path(sys.executable).with_name("tooltool-indexer"))


class Indexers:
    """Starts ``tooltool-indexer`` processes, each in a session of its own, its output
    kept; knows what each did."""

    def __init__(self, environ: dict[str, str], logs: Path) -> None:
        self.environ = environ
        self.logs = logs
        self.started = 0
        self.regions = open_regions(StoreSettings.from_environ(environ), bulk=True)

    def working(self, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
        """Wait until `process` holds the lease (it has started, and its pass begun);
        False when it ended first."""
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            with contextlib.suppress(ObjectNotFound):
                holder = json.loads(self.regions.index.get(LEASE_KEY)[0])["holder"]
                if holder.endswith(f" pid {process.pid}"):
                    return True
            assert time.monotonic() < deadline, "the indexer never took the lease"
            time.sleep(0.05)
        return False

    def start(self, command: list[str]) -> subprocess.Popen[bytes]:
        self.started += 1
        log = (self.logs / f"{self.started:04d}-{command[0]}.log").open("wb")
        with log:
            return subprocess.Popen(
                [INDEXER, *command],
                env=self.environ,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def run(self, command: list[str], timeout: float = 120) -> tuple[int, str]:
        """Run to the end: the exit code and what it wrote."""
        process = self.start(command)
        try:
            code = process.wait(timeout=timeout)
        finally:
            kill(process)  # when it did not end in time
        return code, self.output(self.started)

    def output(self, number: int) -> str:
        [log] = self.logs.glob(f"{number:04d}-*.log")
        return log.read_text(errors="replace")

    def outputs(self) -> str:
        return "".join(self.output(number) for number in range(1, self.started + 1))


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its session, unless it has ended (and been reaped: its
    id may be another process's by then)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def system(seaweedfs: SeaweedFS, tmp_path: Path) -> Iterator[tuple[Gateway, Indexers]]:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    buckets = [(region, seaweedfs.new_bucket()) for region in REGIONS]
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "TOOLTOOL_"))},
        **seaweedfs.environ(*buckets),
        "TOOLTOOL_CLIENTS_FILE": str(clients),
        "TOOLTOOL_JWT_SECRET": "c" * 32,
        "TOOLTOOL_EMBEDDED_INDEXER": "false",
        "TOOLTOOL_INDEX_CACHE_SECONDS": "0",
        "TOOLTOOL_INDEX_NEGATIVE_CACHE_SECONDS": "0",
        "TOOLTOOL_LEASE_SECONDS": str(LEASE_SECONDS),
        # The site has its own crash tests (tests/indexer/test_site_faults.py); rendering
        # it in every round would take most of the time budget.
        "TOOLTOOL_RENDER_SITE": "false",
    }
    (tmp_path / "indexer-logs").mkdir()
    with gateway_process(environ) as url:
        yield Gateway(url), Indexers(environ, tmp_path / "indexer-logs")


def test_the_indexer_killed_at_random_loses_nothing_and_serves_nothing_unverified(
    system: tuple[Gateway, Indexers],
) -> None:
    gateway, indexers = system
    seed = int(os.environ.get("TOOLTOOL_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(
        f"\ncrash loop: seed {seed}, {ROUNDS} rounds (TOOLTOOL_CRASH_SEED, TOOLTOOL_CRASH_ROUNDS)"
    )
    rng = seeded(seed)
    ledger = Ledger()
    actors = [
        Uploader("uploader", gateway, ledger, seeded(rng.random())),
        Patcher("patcher", gateway, ledger, seeded(rng.random())),
    ]
    watcher = Watcher("watcher", gateway, ledger, seeded(rng.random()))
    for actor in [*actors, watcher]:
        actor.start()
    started = time.monotonic()
    try:
        crash_loop(indexers, ledger, rng)
    finally:
        ledger.count("loop_seconds", round(time.monotonic() - started))
        for actor in actors:
            actor.stop()
    # A clean pass must get the lease a killed run left within its expiry (--wait).
    wait = str(LEASE_SECONDS + 3)
    for command in (["run", "--wait", wait], ["rebuild", "--wait", wait], ["run"]):
        code, output = indexers.run(command)
        assert code == 0, f"seed {seed}: {command} exited {code}: {output}"
        summary = json.loads(output.strip().splitlines()[-1])
        print(f"clean {' '.join(command)}: {summary}")
        if command[0] == "rebuild":
            # What the killed passes left, finished by a clean one, is what the sources say.
            assert summary["written"] == summary["shards_written"] == 0, f"seed {seed}"
    watcher.stop()
    lost = check_files(gateway, indexers, ledger)
    figures = {"rounds": ROUNDS, "kills": 0, "mismatches": 0, **ledger.counts, "lost": len(lost)}
    print("crash loop summary: " + ", ".join(f"{name} {n}" for name, n in figures.items()))
    problems = sorted(set(ledger.problems + lost))
    assert not problems, f"seed {seed}: {problems[:20]}\n{histories(indexers, problems)}"
    check_store(indexers, seed)
    assert "Traceback" not in indexers.outputs()


def seeded(seed: float) -> random.Random:
    """A generator that replays its choices from `seed` (reproducible, not secret)."""
    return random.Random(seed)  # noqa: S311


def crash_loop(indexers: Indexers, ledger: Ledger, rng: random.Random) -> None:
    commands, weights = zip(*COMMANDS, strict=True)
    for _ in range(ROUNDS):
        command = rng.choices(commands, weights)[0]
        process = indexers.start(command)
        finishing = command[0] != "watch" and rng.random() < FINISHING
        work = FINISH if finishing else rng.uniform(*WORK)
        try:
            indexers.working(process)
            code = process.wait(timeout=work)
        except subprocess.TimeoutExpired:
            kill(process)
            ledger.count("kills")
        except BaseException:
            kill(process)
            raise
        else:
            ledger.count("indexer_exits")
            if code != 0:
                output = indexers.output(indexers.started)
                ledger.problem(f"{command} exited {code}: {output[-2000:]}")
        ledger.count(f"rounds_{command[0]}")


def histories(indexers: Indexers, problems: list[str]) -> str:
    """The audit records of the files the problems name (by their digests' first 16
    characters), to tell what happened to them."""
    words = {word.strip(":") for problem in problems for word in problem.split()}
    named = {word for word in words if len(word) == 16}
    records = indexers.run(["audit"])[1].splitlines()
    return "\n".join(line for line in records if any(f'"{prefix}' in line for prefix in named))


def check_files(gateway: Gateway, indexers: Indexers, ledger: Ledger) -> list[str]:
    """What a file must show now; the files that do not."""
    failed = {
        json.loads(line)["digest"]
        for line in indexers.run(["failures"])[1].splitlines()
        if line.startswith("{")
    }
    lost = []
    for file in ledger.snapshot():
        problem = check_file(gateway, file, failed)
        if problem:
            lost.append(f"{file.kind} {file.visibility} {file.digest[:16]}: {problem}")
    return lost


def check_file(gateway: Gateway, file: File, failed: set[str]) -> str | None:
    status, answer = gateway.file(file.digest)
    stored = status == 200 and answer["has_instances"]
    if file.kind == WRONG or (file.kind == REPLACED and not stored):
        if stored:
            return "other bytes were stored"
        return None if file.digest in failed else "not listed as a failure"
    if file.deleted:
        deleted = not stored and gateway.redirect(file.digest, "reader")[0] == 404
        return None if deleted else "not deleted"
    if not stored:
        return f"not stored: {status} {answer}"
    if sorted(answer["instances"]) != sorted(REGIONS) or answer["visibility"] != file.visibility:
        return f"stored as {answer}"
    anonymous = gateway.redirect(file.digest)[0]
    if anonymous != (302 if file.visibility == "public" else 403):
        return f"anonymous download answered {anonymous}"
    for region in REGIONS:
        status, location = gateway.redirect(file.digest, "reader", region)
        if status != 302 or fetch(location) != (200, file.data):
            return f"not served from {region}"
    assert file.kind in (RIGHT, REPLACED)
    return None


def check_store(indexers: Indexers, seed: int) -> None:
    regions = indexers.regions
    indexed, invalid = index_objects(regions.index)
    assert not invalid, f"seed {seed}: {invalid[:10]}"
    for problems in (
        catalog_problems(regions.index, indexed),
        feed_problems(regions.index),
        audit_problems(regions.index),
        leftovers(regions),
    ):
        assert not problems, f"seed {seed}: {problems[:10]}"
    code, output = indexers.run(["audit", "--verify"])
    assert code == 0, f"seed {seed}: {output}"
