"""A bounded soak: a mixed load against two gateway replicas on SeaweedFS, on loopback.

    .venv/bin/python bench/soak.py [--duration 120] [--connections 32] [--json FILE]

Starts everything on this machine (:func:`topology`): a SeaweedFS as the tests start
it, ``tooltool-indexer watch`` and two ``tooltool-gateway`` replicas over one bucket
(S3 mode, clients from a file, mozlog logs), each a process of its own, nothing
pinned. Seeds public, internal and to-be-flipped files by the operator import, then
drives the mix of bench/soak_load.py from this process (asyncio on uvloop,
``--connections`` kept-alive connections spread over the replicas) for ``--duration``
seconds or ``--max-requests`` answers, whichever comes first.

Reports, as a table on stdout and as JSON with ``--json``: requests, rate, p50 and p99
per kind and in all; every error (any other status than the one expected, a
connection error, a wrong body) with samples; each replica's RSS (VmRSS) before the
load, at its peak and at the end, sampled every 5 s; and the ERROR lines each process
logged. Exit 0 when there was no error of any kind and each replica's RSS ended within
``--memory-margin`` MiB of its RSS halfway through the load (the first minutes fill
caches and the catalog copy; a leak keeps growing after them); else 1. Speed is
reported, never judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BenchError,
    Server,
    clean_environ,
    free_port,
    gateway_command,
    machine,
    request,
    seaweedfs,
    serve,
    stop,
)
from soak_load import COMPLETED, Seeded, run_load

from indexer.cli import main as indexer_main
from tests.gateway.auth_helpers import CLIENTS, PREFIX, basic
from tests.log_scan import leaks

REPLICAS = 2
BATCH = 32  # seeded files per import
SAMPLE_SECONDS = 5.0
ERROR_LINE = re.compile(r'"Severity": [0-3],')  # mozlog: emergency .. error
INDEXED = '"msg": "indexed upload"'
JWT_SECRET = "soak-jwt-secret-" + "0" * 32


@dataclass
class Topology:
    """What the soak runs against: the replicas' URLs and processes, and the settings."""

    replicas: list[Server]
    indexer: subprocess.Popen[bytes]
    indexer_log: Path
    environ: dict[str, str]


def credentials(writers: int) -> dict[str, dict[str, Any]]:
    """The soak's clients: a reader, an admin (PATCHes), and an uploader per writer."""
    uploader = [f"{PREFIX}/upload/*", f"{PREFIX}/download/*"]
    return {
        "reader": CLIENTS["reader"],
        "admin": CLIENTS["admin"],
        **{
            f"soak-write-{n}": {
                "accessToken": f"soak-write-{n}-token-0123456789",
                "scopes": uploader,
            }
            for n in range(writers)
        },
    }


@contextlib.contextmanager
def topology(scratch: Path, clients: dict[str, dict[str, Any]]) -> Iterator[Topology]:
    """SeaweedFS, ``tooltool-indexer watch`` and two gateway replicas over one bucket,
    `clients` in their clients file; stopped when the block ends."""
    clients_file = scratch / "clients.json"
    clients_file.write_text(
        json.dumps([{"clientId": client_id, **client} for client_id, client in clients.items()])
    )
    with seaweedfs(scratch) as weed, contextlib.ExitStack() as stack:
        environ = {
            **weed.environ(("us-east-1", weed.new_bucket())),
            "TOOLTOOL_CLIENTS_FILE": str(clients_file),
            "TOOLTOOL_JWT_SECRET": JWT_SECRET,
            "TOOLTOOL_LOG_FORMAT": "mozlog",
            "TOOLTOOL_RENDER_SITE": "false",
        }
        indexer_log = scratch / "indexer.log"
        with indexer_log.open("wb") as output:
            indexer = subprocess.Popen(
                [sys.executable, "-m", "indexer.cli", "watch", "--interval", "1"],
                env=clean_environ(environ),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(stop, indexer)
        replicas = []
        for number in range(1, REPLICAS + 1):
            port = free_port()
            replicas.append(
                stack.enter_context(
                    serve(
                        gateway_command(port, "--host", "127.0.0.1"),
                        port=port,
                        settings=environ,
                        log=scratch / f"replica-{number}.log",
                        cores=None,
                    )
                )
            )
        yield Topology(replicas, indexer, indexer_log, environ)


def seed(topology: Topology, scratch: Path, clients: dict[str, dict[str, Any]]) -> Seeded:
    """Public, internal and flip files, imported in batches; a token per client."""
    groups = {"public": 64, "internal": 16, "flip": 8}  # files, imported BATCH at a time
    digests: dict[str, list[str]] = {}
    batches = []
    for group, count in groups.items():
        digests[group] = []
        for first in range(0, count, BATCH):
            message = f"soak seed {group} {first // BATCH}"
            paths = []
            for number in range(first, first + min(BATCH, count)):
                path = scratch / "seed" / f"{group}-{number}.bin"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(os.urandom(1024 + 64 * number))
                paths.append(str(path))
            visibility = "internal" if group == "internal" else "public"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                status = indexer_main(
                    [
                        "import",
                        "--visibility",
                        visibility,
                        "--message",
                        message,
                        "--author",
                        "soak",
                        *paths,
                    ],
                    clean_environ(topology.environ),
                )
            if status != 0:
                raise BenchError(f"the import of {message!r} exited with {status}")
            digests[group] += [line.split()[0] for line in printed.getvalue().splitlines()]
            batches.append(message)
    url = topology.replicas[0].url
    secrets = {client_id: client["accessToken"] for client_id, client in clients.items()}
    tokens = {}
    for client_id, secret in secrets.items():
        authorization = {"Authorization": basic(client_id, secret)}
        status, _, body = request("POST", f"{url}/token", headers=authorization)
        if status != 200:
            raise BenchError(f"POST /token for {client_id} answered {status}: {body[:200]!r}")
        tokens[client_id] = json.loads(body)["token"]
    return Seeded(digests["public"], digests["internal"], digests["flip"], batches, secrets, tokens)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_memory(pids: dict[str, int], samples: dict[str, list[float]]) -> None:
    """Each process's RSS every SAMPLE_SECONDS, until cancelled."""
    while True:
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                samples[name].append(round(rss_mib(pid), 1))
        await asyncio.sleep(SAMPLE_SECONDS)


def halfway(start: float, samples: list[float]) -> float:
    """The RSS sampled halfway through the load (`start` when there is no sample)."""
    return samples[len(samples) // 2] if samples else start


async def _load(topology: Topology, seeded: Seeded, args: argparse.Namespace) -> dict[str, Any]:
    pids = {f"replica {n}": r.process.pid for n, r in enumerate(topology.replicas, start=1)}
    pids["indexer"] = topology.indexer.pid
    samples: dict[str, list[float]] = {name: [] for name in pids}
    start = {name: round(rss_mib(pid), 1) for name, pid in pids.items()}
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu["load generator"] = time.process_time()
    sampler = asyncio.ensure_future(sample_memory(pids, samples))
    try:
        recorder, seconds = await run_load(
            [replica.url for replica in topology.replicas],
            seeded,
            lanes={"read": args.connections, "write": args.writers},
            seconds=args.duration,
            max_requests=args.max_requests,
        )
    finally:
        sampler.cancel()
    memory = {
        name: {
            "start_mib": start[name],
            "half_mib": halfway(start[name], samples[name]),
            "peak_mib": max([start[name], *samples[name]]),
            "end_mib": round(rss_mib(pid), 1),
            "samples_mib": samples[name],
        }
        for name, pid in pids.items()
    }
    cpu_end = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_end["load generator"] = time.process_time()
    used = {name: round((cpu_end[name] - cpu[name]) / seconds, 2) for name in cpu}
    return {
        "seconds": round(seconds, 1),
        **recorder.summary(seconds),
        "memory": memory,
        "cores_used": used,
    }


def soak(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Start everything, seed, load; the report."""
    clients = credentials(args.writers)
    _progress("starting SeaweedFS, the indexer and the replicas")
    with topology(scratch, clients) as running:
        _progress("seeding")
        seeded = seed(running, scratch, clients)
        _progress(f"loading for {args.duration:g} s")
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(_load(running, seeded, args))
        logs = {f"replica {n}": r.log for n, r in enumerate(running.replicas, start=1)}
        _progress("stopping")
    _progress("reading the logs")
    logs["indexer"] = running.indexer_log
    known = [JWT_SECRET, *(client["accessToken"] for client in clients.values())]
    scans = {name: scan_log(path, known) for name, path in logs.items()}
    report["logged_errors"] = {name: scan["errors"] for name, scan in scans.items()}
    report["logged_secrets"] = {name: scan["secrets"] for name, scan in scans.items()}
    report["uploads_indexed"] = scans["indexer"]["indexed"]
    report["connections"] = {"read": args.connections, "write": args.writers}
    report["machine"] = machine()
    report["verdict"] = verdict(report, margin=args.memory_margin)
    return report


def _progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def scan_log(log: Path, known_secrets: list[str]) -> dict[str, Any]:
    """A process's log: its ERROR lines (and tracebacks), the lines holding a secret (as
    tests/log_scan.py finds them), and the uploads the indexer logged as indexed."""
    errors, secrets, indexed = 0, [], 0
    with log.open(errors="replace") as lines:
        for line in lines:
            if ERROR_LINE.search(line) or line.startswith("Traceback"):
                errors += 1
            indexed += INDEXED in line
            secrets += leaks([line], known_secrets)[: 10 - len(secrets)]
    return {"errors": errors, "secrets": secrets, "indexed": indexed}


def verdict(report: dict[str, Any], *, margin: float) -> list[str]:
    """What went wrong: errors, logged errors, a replica's memory grown past the margin
    in the second half of the load."""
    problems = []
    if report["errors"]:
        problems.append(f"{report['errors']} requests failed")
    for name, count in report["logged_errors"].items():
        if count:
            problems.append(f"{name} logged {count} ERROR lines")
    for name, found in report["logged_secrets"].items():
        problems += [f"{name} logged {leak}" for leak in found]
    for name, memory in report["memory"].items():
        if name.startswith("replica") and memory["end_mib"] > memory["half_mib"] + margin:
            problems.append(
                f"{name}'s RSS grew from {memory['half_mib']} MiB halfway through the load"
                f" to {memory['end_mib']} MiB"
            )
    return problems


def table(report: dict[str, Any]) -> str:
    """The report as Markdown tables: per kind, then memory."""
    rows = [
        "| request | answers | per second | p50 | p99 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, row in report["kinds"].items():
        rows.append(
            f"| {kind} | {row['requests']:,} | {row['rate']:,} | {row['p50_ms']} ms"
            f" | {row['p99_ms']} ms | {row['errors']} |"
        )
    rows.append(
        f"| **all** | **{report['requests']:,}** | **{report['rate']:,}** |"
        f" {report['p50_ms']} ms | {report['p99_ms']} ms | **{report['errors']}** |"
    )
    rows += [
        "",
        "| process | RSS before | halfway | peak | end | cores used |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, memory in report["memory"].items():
        rows.append(
            f"| {name} | {memory['start_mib']} MiB | {memory['half_mib']} MiB"
            f" | {memory['peak_mib']} MiB"
            f" | {memory['end_mib']} MiB | {report['cores_used'][name]} |"
        )
    rows.append(f"| load generator | | | | | {report['cores_used']['load generator']} |")
    completed = report["kinds"].get(COMPLETED, {}).get("requests", 0)
    rows += [
        "",
        f"Uploads completed: {completed}; indexed by the end: {report['uploads_indexed']}.",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32, help="of the read lane")
    parser.add_argument("--writers", type=int, default=4, help="connections of the write lane")
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument(
        "--memory-margin",
        type=float,
        default=50.0,
        help="MiB a replica's RSS may grow in the second half of the load",
    )
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--scratch", type=Path, help="keep files and logs here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        scratch = args.scratch or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        scratch.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            report = soak(args, scratch)
        except BenchError as exc:
            print(f"BenchError: {exc}", file=sys.stderr)
            return 1
    print(
        f"{machine()}; {args.connections} + {args.writers} connections,"
        f" {report['seconds']} s of load, {time.monotonic() - started:.0f} s in all"
    )
    print(table(report))
    for sample in report["error_samples"]:
        print(f"error: {sample}")
    for problem in report["verdict"]:
        print(f"FAILED: {problem}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if report["verdict"] else 0


if __name__ == "__main__":
    sys.exit(main())
