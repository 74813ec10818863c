"""The cost of a request summary line as the gateway writes it, against plain mozlog.

    .venv/bin/python bench/bench_logs.py [--rounds 5] [--lines 20000]

Formats the same ``request.summary`` record with dockerflow's MozlogFormatter and
with the gateway's (redacted, exceptions by frames), alternating rounds, and
prints µs per line and the ratio. Formatting is where redaction costs: writing
the line is the same for both.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockerflow.logging import MozlogFormatter

from indexer.logs import make_handler


def per_line(format_line: object, record: logging.LogRecord, lines: int) -> float:
    started = time.perf_counter()
    for _ in range(lines):
        format_line(record)  # type: ignore[operator]
    return (time.perf_counter() - started) / lines * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    record = logging.makeLogRecord(
        {
            "name": "request.summary",
            "msg": "",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "method": "GET",
            "path": "/sha512/" + "a" * 128,
            "code": 302,
            "t": 0.31,
            "rid": "0123456789abcdef0123456789abcdef",
        }
    )
    plain = MozlogFormatter(logger_name="tooltool").format
    ours = make_handler(io.StringIO(), log_format="mozlog").format
    results: dict[str, list[float]] = {"plain": [], "ours": []}
    for _ in range(args.rounds):
        results["plain"].append(per_line(plain, record, args.lines))
        results["ours"].append(per_line(ours, record, args.lines))
    plain_us, ours_us = (statistics.median(results[name]) for name in ("plain", "ours"))
    print("| formatter | µs per summary line | ratio to plain |")
    print("| --- | --- | --- |")
    print(f"| dockerflow MozlogFormatter | {plain_us:.1f} | 1.00 |")
    print(f"| gateway (redacted) | {ours_us:.1f} | {ours_us / plain_us:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
