"""``tooltool-indexer``: operator commands over the stores.

Exit codes: 0 success, 2 usage, 3 a file refused (conflict or changed),
4 settings or store unavailable, 5 a file that cannot be read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from indexer.config import SettingsError, StoreSettings, open_regions
from indexer.importer import ImportRefused, import_file
from indexer.schema import VISIBILITIES
from indexer.stores import StoreError

EXIT_OK = 0
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_UNREADABLE = 5


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one ``tooltool-indexer`` subcommand."""
    environ = os.environ if environ is None else environ
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.command(args, environ))
    except SettingsError as exc:
        return _fail("SettingsError", exc, EXIT_UNAVAILABLE)
    except StoreError as exc:
        return _fail(type(exc).__name__, exc, EXIT_UNAVAILABLE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tooltool-indexer", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    importing = commands.add_parser(
        "import", help="store local files in every region and index them"
    )
    importing.add_argument("--visibility", required=True, choices=VISIBILITIES)
    importing.add_argument("-m", "--message", default="imported by an operator")
    importing.add_argument(
        "--author", default=None, help="recorded uploader (default: the login name)"
    )
    importing.add_argument("files", nargs="+", type=Path, metavar="FILE")
    importing.set_defaults(command=_import)
    return parser


def _import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    regions = open_regions(StoreSettings.from_environ(environ))
    author = args.author or environ.get("USER") or environ.get("LOGNAME") or "tooltool-indexer"
    status = EXIT_OK
    for path in args.files:
        try:
            imported = import_file(
                regions, path, visibility=args.visibility, message=args.message, author=author
            )
        except ImportRefused as exc:
            status = max(status, _fail(type(exc).__name__, exc, EXIT_REFUSED))
            continue
        except OSError as exc:
            reason = exc.strerror or str(exc)
            status = max(status, _fail("UnreadableFile", f"{path}: {reason}", EXIT_UNREADABLE))
            continue
        print(f"{imported.digest} {imported.size} {imported.filename}")
    return status


def _fail(kind: str, message: object, code: int) -> int:
    print(f"{kind}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
