"""``tooltool``: the legacy ``tooltool.py`` command line, kept line for line.

    tooltool [options] list|validate|add|purge|fetch|upload|change-visibility|delete|token [files]

Exit status: 0 on success, 1 on failure, 2 for a command line that cannot be
parsed (as optparse did). Messages go to stderr as ``LEVEL - message``.

The command line is read as the legacy client's optparse read it (see
:class:`_Parser`): options before or after the command, a long option by any
prefix naming one legacy option, and an option's value the next argument
whatever it looks like (``--message -x``).

Two environment variables tune the network waits (tests make them tiny; a CI
fleet may lengthen them), read once per run into :class:`Timing`:

- ``TOOLTOOL_RETRY_SECONDS``: the wait before the first retry of a failed download,
  doubling each round (default 1);
- ``TOOLTOOL_READ_TIMEOUT``: how long a server may stay silent mid-answer before
  the attempt counts as failed (default 60).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from tooltool_client import credentials, servers
from tooltool_client.api import Server
from tooltool_client.errors import ClientError, UsageError
from tooltool_client.transport import READ_TIMEOUT, Transport

logger = logging.getLogger("tooltool")

COMMANDS = (
    "list",
    "validate",
    "add",
    "purge",
    "fetch",
    "upload",
    "change-visibility",
    "delete",
    "token",
)


@dataclass(frozen=True)
class Timing:
    """The network waits (see the module's docstring)."""

    retry_seconds: float = 1.0
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Timing:
        return cls(
            retry_seconds=_seconds(environ, "TOOLTOOL_RETRY_SECONDS", cls.retry_seconds),
            read_timeout=_seconds(environ, "TOOLTOOL_READ_TIMEOUT", cls.read_timeout),
        )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


@dataclass
class Context:
    """What a command works with: its options, the environment, its streams."""

    options: argparse.Namespace
    args: list[str]
    environ: Mapping[str, str]
    stdout: IO[str]
    stderr: IO[str]
    directory: Path = field(default_factory=Path.cwd)

    @property
    def manifest(self) -> Path:
        return Path(self.options.manifest)

    @cached_property
    def timing(self) -> Timing:
        return Timing.from_environ(self.environ)

    @cached_property
    def transport(self) -> Transport:
        return Transport(
            connections=max(8, self.options.jobs), read_timeout=self.timing.read_timeout
        )

    @cached_property
    def servers(self) -> list[Server]:
        urls = servers.base_urls(self.options.base_url, self.environ)
        creds = credentials.from_options(self.options.auth_file, self.environ)
        return [Server(url, creds, self.transport) for url in urls]


Command = Callable[[Context], bool]

# Options the legacy client did not have: an abbreviation that only they make ambiguous
# still names the legacy option (``--s`` is ``--size``, as it was).
_NEW_OPTIONS = frozenset({"--jobs", "--token-file", "--scope", "--expires-in"})


class _Parser(argparse.ArgumentParser):
    """argparse, given the command line as optparse read it (:meth:`optparse_argv`)."""

    def __init__(self, **kwargs: Any) -> None:
        self._long_form: dict[str, str] = {}  # every option string: its long form
        self._takes_value: set[str] = set()
        super().__init__(**kwargs)  # adds -h/--help

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        longs = [option for option in action.option_strings if option.startswith("--")]
        for option in action.option_strings:
            self._long_form[option] = longs[0] if longs else option
            if action.nargs is None:
                self._takes_value.add(option)
        return action

    def optparse_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` with every option that takes a value written ``--long=value``: optparse
        took the next argument as the value whatever it was, where argparse refuses one
        that starts with ``-`` (a message such as ``-bug 1234``, a manifest ``-x.tt``)."""
        out: list[str] = []
        rest = iter(argv)
        for arg in rest:
            if arg == "--":
                out += [arg, *rest]
            elif arg.startswith("--"):
                name, equals, value = arg.partition("=")
                out.append(self._option(self._expand(name), equals + value, rest))
            elif arg.startswith("-") and arg[1:2] and f"-{arg[1]}" in self._long_form:
                out += self._short_options(arg, rest)
            else:
                out.append(arg)
        return out

    def _expand(self, name: str) -> str:
        """The long option `name` abbreviates: the one option it starts, else the one
        legacy option it starts; else `name`, for argparse to refuse."""
        if name in self._long_form:
            return name
        matches = sorted({o for o in self._long_form if o.startswith("--") and o.startswith(name)})
        legacy = [option for option in matches if option not in _NEW_OPTIONS]
        for found in (matches, legacy):
            if len(found) == 1:
                return found[0]
        return name

    def _option(self, name: str, attached: str, rest: Iterator[str]) -> str:
        if attached or name not in self._takes_value:
            return name + attached
        value = next(rest, None)
        return name if value is None else f"{name}={value}"

    def _short_options(self, arg: str, rest: Iterator[str]) -> list[str]:
        """``-qm FILE``: flags, then an option whose value is the rest of `arg` or the
        next argument."""
        out = []
        for index, letter in enumerate(arg[1:], start=2):
            option = f"-{letter}"
            if option not in self._long_form:
                return [arg]  # not an option cluster after all: argparse says so
            if option in self._takes_value:
                attached = f"={arg[index:]}" if arg[index:] else ""
                out.append(self._option(self._long_form[option], attached, rest))
                return out
            out.append(option)
        return out


def parser() -> _Parser:
    p = _Parser(
        prog="tooltool",
        description="Fetch, verify and upload the files a manifest (manifest.tt) lists.",
    )
    add = p.add_argument
    add(
        "-q",
        "--quiet",
        dest="loglevel",
        action="store_const",
        const=logging.ERROR,
        default=logging.INFO,
        help="only errors",
    )
    add(
        "-v",
        "--verbose",
        dest="loglevel",
        action="store_const",
        const=logging.DEBUG,
        help="everything, for debugging",
    )
    add("-m", "--manifest", default="manifest.tt", help="the manifest (default: manifest.tt)")
    add("-d", "--algorithm", default="sha512", help="digest algorithm (only sha512)")
    add("--digest", help="the file's digest, for change-visibility and delete")
    add(
        "--visibility",
        choices=["internal", "public"],
        help='"internal": not to be distributed outside the company; "public": anyone',
    )
    add("--unpack", action="store_true", help="add: unpack this archive after fetching")
    add("--version", help="add: a version string to note in the manifest")
    add("-o", "--overwrite", action="store_true", help="unused; kept for compatibility")
    add(
        "--url",
        dest="base_url",
        action="append",
        help="server URL (repeatable, tried in order; default https://$TOOLTOOL_HOST/)",
    )
    add("-c", "--cache-folder", dest="cache_folder", help="local cache folder")
    add(
        "-s",
        "--size",
        type=float,
        default=0.0,
        help="purge: free space wanted, in GB (0: empty the cache)",
    )
    add("-r", "--region", help="preferred region for upload or fetch, e.g. us-west-2")
    add("--message", help='upload: the "commit message" (a bug number and a comment)')
    add(
        "--authentication-file",
        dest="auth_file",
        help="Taskcluster credentials (JSON clientId/accessToken) or a bearer token",
    )
    add("-j", "--jobs", type=_positive, default=8, help="fetch: files fetched at once (8)")
    add(
        "--token-file", help="token: save the token in this file (mode 0600) instead of printing it"
    )
    add("--scope", dest="scopes", action="append", help="token: a scope to ask for (repeatable)")
    add("--expires-in", type=_positive, help="token: the token's lifetime in seconds")
    # Not `choices`: an unknown command is the legacy client's failure (exit 1), not a usage error.
    add("command", nargs="?", help=", ".join(COMMANDS))
    add("files", nargs="*", help="add: files to add; fetch: only these files")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The options and arguments of a command line; SystemExit (2) when it cannot be read."""
    arguments = parser()
    options = arguments.parse_intermixed_args(arguments.optparse_argv(argv))
    if options.command is None:
        arguments.error("You must specify a command")
    return options


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if options.algorithm != "sha512":
        print("tooltool: error: only --algorithm sha512 is supported", file=stderr)
        return 2
    context = Context(
        options=options,
        args=list(options.files),
        environ=os.environ if environ is None else environ,
        stdout=stdout,
        stderr=stderr,
    )
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(options.loglevel)
    logger.propagate = False
    try:
        return 0 if _run(context) else 1
    except ClientError as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted; a fetch resumes where it stopped when run again")
        return 130
    except BrokenPipeError:
        # The reader of stdout left (`tooltool list | head`): nothing more to tell it, and
        # no traceback either when Python flushes it on the way out.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        logger.removeHandler(handler)
        if "transport" in context.__dict__:
            context.transport.close()


def _run(context: Context) -> bool:
    from tooltool_client import commands

    name = context.options.command
    command: Command | None = commands.REGISTRY.get(name)
    if command is None:
        raise UsageError(f'command "{name}" is not implemented')
    return command(context)
