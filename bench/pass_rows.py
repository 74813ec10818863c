"""bench/fastpath.py's indexer-pass rows: what ``bench/bench_verify.py --json`` reports.

bench_verify.py measures a whole indexer pass (and the streaming hash) on the local
store and on SeaweedFS against plain ``hashlib.sha512``. It runs here as a child
process on both cores; with ``--json`` it prints a JSON list of rows (at least
``row`` and ``ratio``), which become rows of the table. A bench_verify.py without
``--json`` is run as it is, and its own output is printed below the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from harness import BOTH_CORES, REPO, pinned

SCRIPT = REPO / "bench" / "bench_verify.py"
TIMEOUT_SECONDS = 300


@dataclass
class PassRows:
    """The rows bench_verify.py gave, or its plain output, or why there is neither."""

    rows: list[dict[str, Any]]
    plain_output: str = ""
    failure: str | None = None


def measure(size_mib: int, rounds: int) -> PassRows:
    """Run bench_verify.py over `size_mib` MiB for `rounds` rounds."""
    helped = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    has_json = "--json" in helped.stdout
    command = [
        sys.executable, str(SCRIPT), "--size-mib", str(size_mib), "--rounds", str(rounds),
        *(["--json"] if has_json else []),
    ]  # fmt: skip
    print(f"  {' '.join(command[1:])}", file=sys.stderr, flush=True)
    try:
        completed = subprocess.run(
            pinned(command, BOTH_CORES),
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return PassRows([], failure=f"bench_verify.py ran over {TIMEOUT_SECONDS} s")
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return PassRows([], failure=f"bench_verify.py exited {completed.returncode}: {last}")
    if not has_json:
        return PassRows([], plain_output=completed.stdout)
    try:
        rows = json.loads(completed.stdout)
    except ValueError:
        return PassRows([], failure="bench_verify.py --json printed no JSON list")
    return PassRows([row for row in rows if isinstance(row, dict) and "row" in row])


def columns(row: dict[str, Any]) -> dict[str, str]:
    """A bench_verify.py row's table cells: its ratio, and its other fields as a note."""
    ratio = row.get("ratio")
    extra = {name: value for name, value in row.items() if name not in ("row", "ratio")}
    return {
        "ratio": f"{ratio:.2f}" if isinstance(ratio, int | float) else str(ratio),
        "note": ", ".join(f"{name} {_figure(value)}" for name, value in sorted(extra.items())),
    }


def _figure(value: Any) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)
