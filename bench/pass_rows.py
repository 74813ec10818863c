"""bench/fastpath.py's indexer-pass rows: what ``bench/bench_verify.py --json`` reports.

bench_verify.py measures a whole indexer pass (and the streaming hash) on the local
store and on SeaweedFS against plain ``hashlib.sha512``. It runs here as a child
process on both cores; with ``--json`` it prints a JSON list of rows (at least
``row`` and ``ratio``), which become rows of the table (``seconds`` and
``hashlib_seconds``, when a row has them, in its ours and base columns). A
bench_verify.py without ``--json`` is run as it is, and its own output is printed
below the table.
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
    rows = _json_list(completed.stdout)
    if rows is None:
        return PassRows([], failure="bench_verify.py --json printed no JSON list")
    return PassRows([row for row in rows if isinstance(row, dict) and "row" in row])


def _json_list(output: str) -> list[Any] | None:
    """The JSON list `output` is, or holds on a line of its own (after progress lines)."""
    for text in (output, *reversed(output.splitlines())):
        try:
            found = json.loads(text)
        except ValueError:
            continue
        if isinstance(found, list):
            return found
    return None


def columns(row: dict[str, Any]) -> dict[str, str]:
    """A bench_verify.py row's table cells: its ratio, its ``seconds`` and
    ``hashlib_seconds`` when it has them, and its other fields as a note."""
    ratio = row.get("ratio")
    cells = {"ratio": f"{ratio:.2f}" if isinstance(ratio, int | float) else str(ratio)}
    for name, column in (("seconds", "ours"), ("hashlib_seconds", "base")):
        if isinstance(row.get(name), int | float):
            cells[column] = f"{row[name]:.3f} s"
    shown = ("row", "ratio", "seconds", "hashlib_seconds")
    extra = sorted((name, value) for name, value in row.items() if name not in shown)
    return {**cells, "note": ", ".join(f"{name} {_figure(value)}" for name, value in extra)}


def _figure(value: Any) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)
