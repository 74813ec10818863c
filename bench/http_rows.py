"""bench/fastpath.py's request-rate rows: each a pair of servers, started fresh every round.

A comparison is a pair of server processes (ours and a base) and the loads wrk sends
to each. In every round both are started afresh, in turn (the order alternating from
round to round), and every load is checked (each of its paths must answer 302), warmed
up (wrk, 1 s) and measured (wrk, ``--duration``) against each. A row's figures: the
median of the per-round req/s ratios, and the medians of p50 and p99 of each side.
Its note adds the server's CPU time per request (user and system, the server and its
workers, over the measured run), which other work on the machine disturbs less than
the rate. A wrk run that saw any answer other than 2xx/3xx, or any socket error,
makes its row report the errors instead of a rate.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    LOAD_CORE,
    SERVER_CORE,
    BenchError,
    Run,
    busiest_share,
    failed,
    free_port,
    gateway_command,
    median,
    request,
    rotation_script,
    serve,
    wrk,
)

WARM_UP_SECONDS = 1


@dataclass(frozen=True)
class Side:
    """One server of a comparison: how it starts, on which cores."""

    command: Callable[[int], list[str]]  # the command for a port
    settings: Mapping[str, str]
    cores: str = SERVER_CORE
    workers: int = 1


@dataclass(frozen=True)
class Load:
    """One row: what wrk sends, and where our answers must point."""

    row: str
    paths: tuple[str, ...]  # asked in turn (a wrk script) when more than one
    header: str | None = None
    location: str | None = None  # the prefix of our redirects' Location, when it matters


@dataclass(frozen=True)
class Comparison:
    """Rows measured on one pair of servers."""

    ours: Side
    base: Side
    loads: tuple[Load, ...]
    load_cores: str = LOAD_CORE


@dataclass
class Measured:
    """A row's runs, or why it has none."""

    load: Load
    ours: list[Run] = field(default_factory=list)
    base: list[Run] = field(default_factory=list)
    failure: str | None = None

    def columns(self) -> dict[str, str]:
        """The row's table cells."""
        if self.failure is not None:
            return failed(self.failure)
        errors = {side: sum(run.errors for run in runs) for side, runs in self.sides().items()}
        if any(errors.values()):
            counts = ", ".join(
                f"{side} {errors[side]:,} of {sum(run.requests for run in runs):,}"
                for side, runs in self.sides().items()
            )
            return {"ratio": "ERRORS", "note": f"non-3xx answers or socket errors: {counts}"}
        ratios = [
            ours.requests_per_second / base.requests_per_second
            for ours, base in zip(self.ours, self.base, strict=True)
        ]
        rates = {
            side: median([run.requests_per_second for run in runs])
            for side, runs in self.sides().items()
        }
        return {
            "ours": f"{rates['ours']:,.0f}",
            "base": f"{rates['base']:,.0f}",
            "ratio": f"{median(ratios):.2f}",
            "p50": self._latency("p50"),
            "p99": self._latency("p99"),
            "note": (
                "per round "
                + " ".join(f"{ratio:.2f}" for ratio in ratios)
                + f"; server CPU per request ours/base {self._cpu()}"
                + self._shares()
            ),
        }

    def _cpu(self) -> str:
        ours, base = (
            median([run.cpu_per_request or 0.0 for run in runs]) for runs in (self.ours, self.base)
        )
        return f"{ours * 1e6:.0f}/{base * 1e6:.0f} µs"

    def _shares(self) -> str:
        shares = [run.busiest for run in self.ours if run.busiest is not None]
        if not shares:
            return ""
        rounds = " ".join(f"{share:.0%}" for share in shares)
        return f"; the busiest worker answered {rounds} of ours' requests"

    def sides(self) -> dict[str, list[Run]]:
        return {"ours": self.ours, "base": self.base}

    def _latency(self, name: str) -> str:
        ours, base = (
            median([getattr(run, name) for run in runs]) for runs in (self.ours, self.base)
        )
        return f"{ours * 1e3:.2f}/{base * 1e3:.2f} ms"


def measure(
    comparisons: Sequence[Comparison],
    *,
    rounds: int,
    duration: int,
    connections: int,
    logs: Path,
) -> list[Measured]:
    """Every comparison's rows, over `rounds` alternating rounds."""
    measured = {load.row: Measured(load) for comparison in comparisons for load in comparison.loads}
    scripts = {
        load.row: rotation_script(logs / f"rotation-{number}.lua", load.paths)
        for number, load in enumerate(item.load for item in measured.values())
        if len(load.paths) > 1
    }
    for round_number in range(rounds):
        for comparison in comparisons:
            rows = [measured[load.row] for load in comparison.loads]
            if any(row.failure is not None for row in rows):
                continue
            sides = [("ours", comparison.ours), ("base", comparison.base)]
            if round_number % 2:
                sides.reverse()
            try:
                for name, side in sides:
                    runs = _runs(
                        comparison, side, name == "ours", scripts, duration, connections, logs
                    )
                    for row, run in zip(rows, runs, strict=True):
                        getattr(row, name).append(run)
                        _progress(round_number, rounds, row.load.row, name, run)
            except BenchError as exc:
                for row in rows:
                    row.failure = str(exc)
    return list(measured.values())


def _runs(
    comparison: Comparison,
    side: Side,
    is_ours: bool,
    scripts: Mapping[str, Path],
    duration: int,
    connections: int,
    logs: Path,
) -> list[Run]:
    port = free_port()
    runs = []
    with serve(
        side.command(port),
        port=port,
        settings=side.settings,
        log=logs / f"server-{port}.log",
        cores=side.cores,
        workers=side.workers,
    ) as server:
        for load in comparison.loads:
            _check(server.url, load, is_ours)
            url = server.url + load.paths[0]
            load_for = functools.partial(
                wrk,
                url,
                connections=connections,
                cores=comparison.load_cores,
                header=load.header,
                script=scripts.get(load.row),
            )
            load_for(duration=WARM_UP_SECONDS)
            used = server.cpu_seconds()
            run = load_for(duration=duration)
            used = server.cpu_seconds() - used
            runs.append(dataclasses.replace(run, cpu_per_request=used / max(run.requests, 1)))
    if side.workers > 1:
        share = busiest_share(server.log)
        runs = [dataclasses.replace(run, busiest=share) for run in runs]
    return runs


def _check(base: str, load: Load, is_ours: bool) -> None:
    """Every path of `load` answers 302 (ours: to the expected place)."""
    headers = dict([load.header.split(": ", 1)]) if load.header else {}
    for path in load.paths:
        status, answer, body = request("GET", base + path, headers=headers)
        if status != 302:
            raise BenchError(f"GET {path[:24]}… answered {status}, not 302: {body[:120]!r}")
        location = answer.get("location", "")
        if is_ours and load.location is not None and not location.startswith(load.location):
            raise BenchError(f"redirected to {location[:60]}…, not to {load.location}")


def _progress(round_number: int, rounds: int, row: str, side: str, run: Run) -> None:
    print(
        f"  round {round_number + 1}/{rounds} {row[:58]:58} {side:4}"
        f" {run.requests_per_second:8,.0f} req/s p50 {run.p50 * 1e3:6.2f} ms"
        f" p99 {run.p99 * 1e3:6.2f} ms" + (f" ERRORS {run.errors}" if run.errors else ""),
        file=sys.stderr,
        flush=True,
    )


# -- what the rows serve ------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """The files one store holds for the rows."""

    public: tuple[str, ...]
    internal: str


def seed(settings: Mapping[str, str], scratch: Path, *, public: int) -> Seeded:
    """`public` public files and one internal file, put in place by the operator import."""
    from indexer.config import StoreSettings, open_regions
    from indexer.importer import import_file
    from indexer.schema import Visibility

    regions = open_regions(StoreSettings.from_environ(settings), bulk=True)
    scratch.mkdir(parents=True, exist_ok=True)
    digests = []
    for number in range(public + 1):
        path = scratch / f"tool-{number}.tar.xz"
        path.write_bytes(number.to_bytes(4, "big") * 1024)
        visibility: Visibility = "internal" if number == public else "public"
        imported = import_file(
            regions, path, visibility=visibility, message="fastpath bench", author="bench"
        )
        digests.append(imported.digest)
    return Seeded(tuple(digests[:public]), digests[public])


def issue_token(settings: Mapping[str, str], basic: str, logs: Path) -> str:
    """A JWT from ``POST /token`` of a gateway over `settings`, for an hour."""
    port = free_port()
    with serve(
        gateway_command(port), port=port, settings=settings, log=logs / "token.log"
    ) as server:
        status, _, body = request(
            "POST",
            server.url + "/token",
            body=json.dumps({"expires_in": 3600}).encode(),
            headers={"Authorization": basic, "Content-Type": "application/json"},
        )
    if status != 200:
        raise BenchError(f"POST /token answered {status}: {body[:200]!r}")
    return str(json.loads(body)["token"])
