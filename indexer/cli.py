"""``tooltool-indexer``: operator commands over the stores.

Exit codes: 0 success, 1 an unexpected error, 2 usage, 3 a file refused (conflict or changed),
4 settings or store unavailable (``init``: a problem found), 5 a file that cannot be read,
6 a partial pass (something malformed was set aside, or a region other than the index's could
not be reached: see the log; the rest was done),
7 no such file (set-visibility, delete), 8 the audit log's chain is broken
(audit --verify), 75 another run holds the lease (EX_TEMPFAIL: try again later),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from indexer.audit import AuditLog
from indexer.catalog import file_entry
from indexer.config import SettingsError, StoreSettings, open_regions
from indexer.digests import is_valid_digest
from indexer.importer import ImportRefused, import_file, record_import
from indexer.instrumented_store import instrumented
from indexer.intake import next_batch_id
from indexer.job import Indexer, PassReport
from indexer.lease import Lease, LeaseHeld
from indexer.logs import LOG_FORMATS, configure_logging, escape_controls, format_exception
from indexer.management import (
    MAX_REASON,
    DeleteInstances,
    Operation,
    SetVisibility,
    UnknownFile,
    apply,
)
from indexer.metrics import Metrics
from indexer.pass_metrics import PassMetrics, outcome_of
from indexer.progress import terminal_progress
from indexer.provision import PROBLEM, inspect
from indexer.rebuild import rebuild
from indexer.redaction import redact
from indexer.schema import VISIBILITIES
from indexer.sentry import init_sentry, sentry_dsn
from indexer.site.job import render_site
from indexer.stores import Regions, StoreError

logger = logging.getLogger("indexer.cli")  # also when run as __main__

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_UNREADABLE = 5
EXIT_PARTIAL = 6
EXIT_UNKNOWN = 7
EXIT_TAMPERED = 8
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: another run holds the lease; try again later


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one ``tooltool-indexer`` subcommand; its exit code."""
    environ = os.environ if environ is None else environ
    parser = _parser()
    args = parser.parse_args(argv)
    log_format = (environ.get("TOOLTOOL_LOG_FORMAT") or "text").strip()
    if log_format not in LOG_FORMATS:
        return _fail(
            "SettingsError",
            f"TOOLTOOL_LOG_FORMAT: expected mozlog or text, got {log_format!r}",
            EXIT_UNAVAILABLE,
        )
    configure_logging(
        level=logging.INFO if args.command is _watch else logging.WARNING,
        log_format=log_format,
        stream=sys.stderr,
    )
    try:
        init_sentry(sentry_dsn(environ), component="indexer")
        with terminated_on_sigterm():
            return int(args.command(args, environ))
    except Terminated:
        return _fail("Terminated", "stopped before the end; a later run finishes the work", 143)
    except SettingsError as exc:
        return _fail("SettingsError", exc, EXIT_UNAVAILABLE)
    except StoreError as exc:
        return _fail(type(exc).__name__, exc, EXIT_UNAVAILABLE)
    except LeaseHeld as exc:
        return _fail("LeaseHeld", exc, EXIT_TEMPFAIL)
    except KeyboardInterrupt:
        return _fail("Interrupted", "stopped before the end; a later run finishes the work", 130)
    except Exception as exc:  # one line, never a traceback; the frames at DEBUG
        logger.debug("unexpected error", exc_info=True)
        return _fail("InternalError", format_exception(type(exc), exc, None)[0], EXIT_INTERNAL)


class Terminated(KeyboardInterrupt):
    """SIGTERM (how cron's kill, Kubernetes and Taskcluster stop a job): unwound like
    Ctrl-C, so the lease is given up and no step is left half-made."""


@contextlib.contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tooltool-indexer", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    initing = commands.add_parser(
        "init",
        help="check what a deployment needs (buckets, public access block, write access,"
        " lease, audit log), one line each; exit 4 on a problem",
    )
    initing.add_argument(
        "--create",
        action="store_true",
        help="make what is missing first: buckets, and their public access block",
    )
    initing.set_defaults(command=_init)

    importing = commands.add_parser(
        "import", help="store local files in every region and index them"
    )
    importing.add_argument("--visibility", required=True, choices=VISIBILITIES)
    importing.add_argument("-m", "--message", default="imported by an operator")
    importing.add_argument(
        "--author", default=None, help="recorded uploader (default: the operator's user@host)"
    )
    importing.add_argument("files", nargs="+", type=Path, metavar="FILE")
    importing.set_defaults(command=_import)

    running = commands.add_parser(
        "run", help="one pass: verify and index pending uploads, then check consistency"
    )
    running.add_argument(
        "--no-check", action="store_true", help="skip the consistency check and catalog rebuild"
    )
    _wait_argument(running)
    _metrics_argument(running)
    running.set_defaults(command=_run)

    watching = commands.add_parser("watch", help="run passes until interrupted")
    watching.add_argument("--interval", type=_positive, default=2.0, metavar="SECONDS")
    watching.add_argument(
        "--check-interval",
        type=_positive,
        default=3600.0,
        metavar="SECONDS",
        help="how often a pass also checks consistency (default: hourly)",
    )
    _metrics_argument(watching)
    watching.set_defaults(command=_watch)

    rebuilding = commands.add_parser(
        "rebuild",
        help="rewrite every index object and the catalog from the blobs, batches and audit log",
    )
    _wait_argument(rebuilding)
    _metrics_argument(rebuilding)
    rebuilding.set_defaults(command=_rebuild)

    failures = commands.add_parser("failures", help="list uploads that failed verification")
    failures.set_defaults(command=_failures)

    visibility = commands.add_parser("set-visibility", help="make a stored file public or internal")
    visibility.add_argument("digest", type=_digest)
    visibility.add_argument("visibility", choices=VISIBILITIES)
    _management_arguments(visibility)
    visibility.set_defaults(command=_set_visibility)

    deleting = commands.add_parser(
        "delete", help="delete every copy of a file's bytes, leaving a tombstone"
    )
    deleting.add_argument("digest", type=_digest)
    _management_arguments(deleting)
    deleting.set_defaults(command=_delete)

    audit = commands.add_parser("audit", help="print (or verify) the audit log, as JSON lines")
    audit.add_argument("--digest", type=_digest, help="only this file's records")
    audit.add_argument(
        "--since", type=_moment, help="only records at or after this UTC time (ISO 8601)"
    )
    audit.add_argument(
        "--verify", action="store_true", help="check the hash chain (exit 8 when broken)"
    )
    audit.set_defaults(command=_audit)
    return parser


def _init(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = StoreSettings.from_environ(environ)
    print(f"checking {settings.described}", file=sys.stderr)
    findings = inspect(open_regions(settings, bulk=True), create=args.create)
    for finding in findings:
        print(escape_controls(redact(str(finding))))
    problems = sum(finding.level == PROBLEM for finding in findings)
    if problems:
        return _fail("InitError", f"{problems} problem(s): see the lines above", EXIT_UNAVAILABLE)
    return EXIT_OK


def _audit(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    log = AuditLog(open_regions(StoreSettings.from_environ(environ), bulk=True).index)
    if args.verify:
        problems = log.verify()
        for problem in problems:
            print(f"BrokenChain: {problem}", file=sys.stderr)
        if problems:
            return EXIT_TAMPERED
        print("the audit log's chain is whole", file=sys.stderr)
        return EXIT_OK
    since = args.since
    for record in log.records():
        if isinstance(record, str):
            logger.error("unreadable audit record %s", record)
            continue
        if args.digest and record.digest != args.digest:
            continue
        if since is not None and _moment(record.at) < since:
            continue
        print(record.to_json().decode("utf-8"))
    return EXIT_OK


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text[:50]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for another run's lease (default 10; then exit 75)",
    )


def _metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="write Prometheus metrics to PATH after each pass, for node_exporter's textfile"
        " collector (TOOLTOOL_METRICS_FILE)",
    )


def _pass_metrics(args: argparse.Namespace, environ: Mapping[str, str]) -> PassMetrics | None:
    """The metrics of `--metrics-file` or TOOLTOOL_METRICS_FILE, if either is given."""
    named = environ.get("TOOLTOOL_METRICS_FILE", "").strip()
    path = args.metrics_file or (Path(named) if named else None)
    if path is None:
        return None
    if not path.parent.is_dir():
        raise SettingsError(f"TOOLTOOL_METRICS_FILE: {path.parent} is not a directory")
    return PassMetrics(Metrics(), path=path)


def _open_regions(settings: StoreSettings, passes: PassMetrics | None) -> Regions:
    """The indexer's stores, their calls counted when there are metrics."""
    regions = open_regions(settings, bulk=True)
    return regions if passes is None else instrumented(regions, passes.metrics)


def _seconds(value: str) -> float:
    try:
        if float(value) == 0:
            return 0.0
    except ValueError:
        pass
    return _positive(value)


def _management_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why, for the tombstone and the log")
    parser.add_argument("--by", default=None, help="who (default: the operator's user@host)")


def _digest(value: str) -> str:
    if not is_valid_digest(value):
        raise argparse.ArgumentTypeError("not a sha512 digest (128 lowercase hex characters)")
    return value


def _set_visibility(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _manage(args, environ, SetVisibility(args.visibility, args.reason))


def _delete(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _manage(args, environ, DeleteInstances(args.reason))


def _manage(args: argparse.Namespace, environ: Mapping[str, str], operation: Operation) -> int:
    if len(args.reason) > MAX_REASON:
        return _fail("UsageError", f"--reason: at most {MAX_REASON} characters", 2)
    regions = open_regions(StoreSettings.from_environ(environ), bulk=True)
    try:
        changed = apply(regions, args.digest, [operation], by=args.by or _operator(environ))
    except UnknownFile as exc:
        return _fail("UnknownFile", exc, EXIT_UNKNOWN)
    print(json.dumps(file_entry(changed), sort_keys=True))
    return EXIT_OK


def _operator(environ: Mapping[str, str]) -> str:
    user = environ.get("USER") or environ.get("LOGNAME") or "operator"
    return f"{user}@{socket.gethostname()}"


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < number < 10**6:  # NaN and infinity included
        raise argparse.ArgumentTypeError("must be a positive number of seconds under 1000000")
    return number


Done = tuple[dict[str, int], int, bool, PassReport | None]


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    def one_pass(regions: Regions, settings: StoreSettings) -> Done:
        indexer = Indexer(
            regions,
            progress=terminal_progress(),
            render_site=settings.renders_site,
            late_put=settings.late_put_seconds,
        )
        report = indexer.run_once(check=not args.no_check)
        failures = len(report.failed) + len(report.expired) + len(report.malformed)
        return report.summary(), failures, report.is_partial, report

    return _leased(args, environ, "pass" if args.no_check else "check", one_pass)


def _rebuild(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    def whole(regions: Regions, settings: StoreSettings) -> Done:
        report = rebuild(regions, progress=terminal_progress())
        if settings.renders_site:
            render_site(regions.index)
        return report.summary(), report.unreadable, report.is_partial, None

    return _leased(args, environ, "rebuild", whole)


def _leased(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    kind: str,
    job: Callable[[Regions, StoreSettings], Done],
) -> int:
    """Run `job` under the lease, then print its summary line; 6 when it was partial."""
    settings = StoreSettings.from_environ(environ)
    passes = _pass_metrics(args, environ)
    regions = _open_regions(settings, passes)
    started = time.monotonic()
    try:
        with Lease(regions.index, seconds=settings.lease_seconds, wait=args.wait):
            counts, failures, is_partial, report = job(regions, settings)
    except LeaseHeld:
        _record(passes, kind, started, "skipped")
        raise
    except BaseException:
        _record(passes, kind, started, "failed")
        raise
    _record(passes, kind, started, outcome_of(is_partial=is_partial), report)
    _print_summary(counts, started, failures)
    return EXIT_PARTIAL if is_partial else EXIT_OK


def _record(
    passes: PassMetrics | None,
    kind: str,
    started: float,
    outcome: str,
    report: PassReport | None = None,
) -> None:
    """Count a pass that began at `started` (monotonic), when there are metrics."""
    if passes is not None:
        passes.record(kind, time.monotonic() - started, outcome, report)


def _print_summary(counts: Mapping[str, int], started: float, failures: int) -> None:
    """The one JSON line a scheduled run ends with: counts, bytes, seconds, failures."""
    seconds = round(time.monotonic() - started, 3)
    print(json.dumps({**counts, "failures": failures, "seconds": seconds}, sort_keys=True))


def _watch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = StoreSettings.from_environ(environ)
    passes = _pass_metrics(args, environ)
    regions = _open_regions(settings, passes)
    indexer = Indexer(
        regions, render_site=settings.renders_site, late_put=settings.late_put_seconds
    )
    logger.info(
        "watching %s: a pass every %g s, a consistency check every %g s; Ctrl-C stops",
        settings.described,
        args.interval,
        args.check_interval,
    )
    schedule = CheckSchedule(args.check_interval)
    try:
        while True:
            started = time.monotonic()
            check = schedule.is_due(started)
            lease = Lease(regions.index, seconds=settings.lease_seconds)
            finished = _watched_pass(indexer, lease, check=check, passes=passes)
            if check:
                schedule.checked(started, finished=finished)
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
        logger.info("stopped")
        return EXIT_OK


class CheckSchedule:
    """When `watch` checks consistency: at once, then every `interval` seconds. A check
    that did not finish is tried again after a delay doubling from `retry` up to the
    interval: a store that stays down does not make every pass a failing check."""

    def __init__(self, interval: float, *, retry: float = 60.0) -> None:
        self._interval = interval
        self._first_retry = min(retry, interval)
        self._retry = self._first_retry
        self._due = float("-inf")

    def is_due(self, now: float) -> bool:
        return now >= self._due

    def checked(self, started: float, *, finished: bool) -> None:
        """A check started at `started` (monotonic seconds) ended, `finished` or not."""
        if finished:
            self._retry = self._first_retry
            self._due = started + self._interval
        else:
            self._due = started + self._retry
            self._retry = min(self._retry * 2, self._interval)


def _watched_pass(
    indexer: Indexer, lease: Lease, *, check: bool, passes: PassMetrics | None = None
) -> bool:
    """One pass of `watch` under the lease (held for this pass only, so a scheduled
    rebuild gets its turn); the loop outlives any failed pass. Whether it finished."""
    started = time.monotonic()
    kind = "check" if check else "pass"
    try:
        with lease:
            report = indexer.run_once(check=check)
    except LeaseHeld as exc:
        logger.debug("skipping this pass: %s", exc)
        _record(passes, kind, started, "skipped")
        return False
    except StoreError as exc:
        logger.error("indexer pass failed: %s: %s", type(exc).__name__, exc)
        _record(passes, kind, started, "failed")
        return False
    except Exception as exc:  # the loop must go on: one line, the frames at DEBUG
        logger.error("indexer pass failed: %s", format_exception(type(exc), exc, None)[0])
        logger.debug("indexer pass failed", exc_info=True)
        _record(passes, kind, started, "failed")
        return False
    _record(passes, kind, started, outcome_of(is_partial=report.is_partial), report)
    if report.is_partial:
        logger.error(
            "partial pass: %d malformed objects set aside, %d uploads waiting for"
            " unreachable regions %s",
            len(report.malformed),
            len(report.deferred),
            ", ".join(report.unreachable) or "(none)",
        )
    return True


def _failures(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    indexer = Indexer(open_regions(StoreSettings.from_environ(environ), bulk=True))
    for record in indexer.failures():
        print(json.dumps(record, sort_keys=True))
    return EXIT_OK


def _import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Import the files as one batch, recorded like an upload's."""
    names = [path.name for path in args.files]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        # A batch names each file once: two files of one name would be one entry.
        return _fail("UsageError", f"two files named {doubled[0]!r}: import them apart", 2)
    settings = StoreSettings.from_environ(environ)
    regions = open_regions(settings, bulk=True)
    author = args.author or _operator(environ)
    batch_id = next_batch_id(regions.index)
    started = time.time()
    clock = lambda: started  # noqa: E731 - one time for the batch, its files and their records
    status = EXIT_OK
    imported = []
    for path in args.files:
        try:
            done = import_file(
                regions,
                path,
                visibility=args.visibility,
                message=args.message,
                author=author,
                batch_id=batch_id,
                clock=clock,
            )
        except ImportRefused as exc:
            status = max(status, _fail(type(exc).__name__, exc, EXIT_REFUSED))
            continue
        except OSError as exc:
            reason = exc.strerror or str(exc)
            status = max(status, _fail("UnreadableFile", f"{path}: {reason}", EXIT_UNREADABLE))
            continue
        imported.append(done)
        print(f"{done.digest} {done.size} {done.filename}")
    if imported:
        record_import(
            regions,
            batch_id,
            imported,
            visibility=args.visibility,
            message=args.message,
            author=author,
            clock=clock,
        )
    return status


def _fail(kind: str, message: object, code: int) -> int:
    print(escape_controls(redact(f"{kind}: {message}")), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
