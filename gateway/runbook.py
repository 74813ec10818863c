"""``tooltool-gateway check``: the runbook's three checks against any deployment.

    tooltool-gateway check URL --public DIGEST --internal DIGEST [--authentication-file F]

The checks the seed's runbook makes with curl, each answered by one line,
``PASS <check>: <what was seen>`` or ``FAIL <check>: <why>``:

1. ``public``: ``GET URL/sha512/<public>`` answers 302, and the URL it redirects to
   (resolved against the request's, should it be relative) serves bytes whose sha512
   is that digest. The redirect is not followed blindly: a 200 there would hide it.
2. ``internal``: ``GET URL/sha512/<internal>``, anonymous, answers 403 with the
   runbook's body (its ``detail``, ``instance``, ``status``, ``title`` and ``type``
   exactly; other members, such as ``error``, may follow).
3. ``invalid``: ``GET URL/sha512/invalid`` answers 400 with the runbook's body.

With ``--authentication-file`` (the legacy client's: JSON ``{"clientId",
"accessToken"}`` signs with Hawk, any other text is sent as a Bearer token), a fourth,
``internal with credentials``: the internal file redirects for that caller and its
bytes are right. Credentials are sent to the deployment only, never to the URL it
redirects to, and no line shows them, nor a signed URL's query.

``--timeout`` bounds each request whole, however slowly its answer trickles in (the
public file's bytes get ten times as long).

Exit codes: 0 every check passed, 1 a check failed, 2 usage, 3 the deployment did not
answer (one line on stderr saying so), 4 an unreadable authentication file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPException, InvalidURL
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import mohawk

from gateway.errors import problem_body
from gateway.lookup import INVALID_DIGEST

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SETTINGS = 0, 1, 2, 3, 4

# The members of the runbook's error bodies (the legacy service answered these only).
RUNBOOK_MEMBERS = ("detail", "instance", "status", "title", "type")
MAX_ERROR_BODY = 64 * 1024  # an error body is read this far, no further
CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{128}")

Authorize = Callable[[str], str]  # the Authorization header for a GET of this URL
FETCH_FACTOR = 10  # the public file's bytes get this many timeouts
T = TypeVar("T")


class Unreachable(Exception):
    """The deployment did not answer: refused, unresolvable, timed out or cut off."""


@dataclass(frozen=True)
class Outcome:
    """One check's verdict and what it saw."""

    check: str
    passed: bool
    reason: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.reason}"


@dataclass(frozen=True)
class Answer:
    """A response, not followed: its status, headers and (error) body."""

    status: int
    headers: Message
    body: bytes


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 302 itself is what check 1 looks at


class Deployment:
    """The deployment at `url` (a base URL, under a path prefix or not)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url.rstrip("/") + "/"
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def get(self, path: str, authorization: str | None = None) -> Answer:
        """``GET <url><path>``, redirects not followed; Unreachable when nothing answers."""
        return _within(self._timeout, _short(self.url), lambda: self._get(path, authorization))

    def _get(self, path: str, authorization: str | None) -> Answer:
        target = self.url + path
        request = urllib.request.Request(target)  # noqa: S310 (http(s), checked by the CLI)
        if authorization is not None:
            request.add_header("Authorization", authorization)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Answer(response.status, response.headers, response.read(MAX_ERROR_BODY))
        except urllib.error.HTTPError as answer:  # any status but 2xx
            with answer:
                return Answer(answer.code, answer.headers, answer.read(MAX_ERROR_BODY))
        except (OSError, HTTPException) as exc:  # URLError included
            raise Unreachable(f"{_short(self.url)} did not answer: {_reason(exc)}") from exc

    def fetch(self, url: str) -> tuple[int, str, int]:
        """``GET url`` (redirects followed, no credentials): status, sha512 and size of the
        bytes served. A failure to connect raises Unreachable naming the URL's host."""
        return _within(self._timeout * FETCH_FACTOR, _shown(url), lambda: self._fetch(url))

    def _fetch(self, url: str) -> tuple[int, str, int]:
        request = urllib.request.Request(url)  # noqa: S310 (http(s), checked by the caller)
        digest, size = hashlib.sha512(), 0
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                return response.status, digest.hexdigest(), size
        except urllib.error.HTTPError as answer:
            answer.close()
            return answer.code, "", 0
        except (OSError, HTTPException) as exc:
            raise Unreachable(f"{_shown(url)} did not answer: {_reason(exc)}") from exc


def _within(seconds: float, shown: str, call: Callable[[], T]) -> T:
    """`call`'s result, or Unreachable when it has not returned within `seconds` (a
    server trickling its answer defeats a socket timeout: this bounds the whole)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=run, daemon=True)  # abandoned if it overruns
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise Unreachable(f"{shown} did not answer in full within {seconds:g} s")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


def check_public(deployment: Deployment, digest: str) -> Outcome:
    """Check 1: a known public file redirects (302) to its exact bytes."""
    return _redirects_to_bytes("public", deployment, digest, None)


def check_internal(deployment: Deployment, digest: str) -> Outcome:
    """Check 2: a known internal file stays protected (403, the runbook's body)."""
    answer = deployment.get(f"sha512/{digest}")
    if answer.status in (301, 302, 303, 307, 308):
        return Outcome("internal", False, f"{answer.status}: served to anonymous callers")
    return _problem("internal", answer, 403)


def check_invalid(deployment: Deployment) -> Outcome:
    """Check 3: something that is not a sha512 is a 400 (the runbook's body)."""
    return _problem("invalid", deployment.get("sha512/invalid"), 400, INVALID_DIGEST)


def check_internal_with_credentials(
    deployment: Deployment, digest: str, authorize: Authorize
) -> Outcome:
    """With credentials: the internal file redirects (302) to its exact bytes."""
    return _redirects_to_bytes("internal with credentials", deployment, digest, authorize)


def run_checks(
    deployment: Deployment,
    *,
    public: str,
    internal: str,
    authorize: Authorize | None = None,
    report: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Every check in the runbook's order, each reported as soon as it is known."""
    checks: list[Callable[[], Outcome]] = [
        lambda: check_public(deployment, public),
        lambda: check_internal(deployment, internal),
        lambda: check_invalid(deployment),
    ]
    if authorize is not None:
        checks.append(lambda: check_internal_with_credentials(deployment, internal, authorize))
    outcomes = []
    for check in checks:
        outcomes.append(check())
        report(outcomes[-1])
    return outcomes


def _redirects_to_bytes(
    name: str, deployment: Deployment, digest: str, authorize: Authorize | None
) -> Outcome:
    path = f"sha512/{digest}"
    answer = deployment.get(path, None if authorize is None else authorize(deployment.url + path))
    if answer.status != 302:
        return Outcome(name, False, f"{answer.status}, not 302{_detail(answer)}")
    location = answer.headers.get("Location")
    if not location:
        return Outcome(name, False, "302 without a Location")
    try:
        target = urljoin(deployment.url + path, location)
        if urlsplit(target).scheme not in ("http", "https"):
            return Outcome(name, False, "302 to a URL that is not http(s)")
        status, fetched, size = deployment.fetch(target)
    except ValueError:
        return Outcome(name, False, "302 to a malformed URL")
    except Unreachable as exc:  # the store, not the deployment: this check fails
        return Outcome(name, False, f"302, but {exc}")
    if status != 200:
        return Outcome(name, False, f"302 to {_shown(target)}, which answered {status}")
    if fetched != digest:
        return Outcome(
            name, False, f"302 to {_shown(target)}, which served {size} bytes of another sha512"
        )
    return Outcome(name, True, f"302 to {_shown(target)}, which served its {size} bytes")


def _problem(name: str, answer: Answer, status: int, detail: str | None = None) -> Outcome:
    """`answer` is `status` with the runbook's body for it."""
    if answer.status != status:
        return Outcome(name, False, f"{answer.status}, not {status}{_detail(answer)}")
    expected = problem_body(status, detail)
    try:
        body = json.loads(answer.body)
    except ValueError:
        return Outcome(name, False, f"{status}, but its body is not JSON")
    if not isinstance(body, dict):
        return Outcome(name, False, f"{status}, but its body is not a JSON object")
    for member in RUNBOOK_MEMBERS:
        if body.get(member) != expected[member]:
            found = _short(json.dumps(body.get(member)))
            return Outcome(
                name, False, f"{status}, but its {member} is {found}, not {expected[member]!r}"
            )
    return Outcome(name, True, f"{status} with the runbook's body")


def _detail(answer: Answer) -> str:
    """A problem body's detail, shortened, for a failure's line ("" if none)."""
    try:
        detail = json.loads(answer.body).get("detail")
    except (ValueError, AttributeError):
        return ""
    return f" ({_short(detail)})" if isinstance(detail, str) else ""


def _short(text: str, limit: int = 120) -> str:
    text = text.encode("ascii", "backslashreplace").decode()  # no control character printed
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(url: str) -> str:
    """`url`'s origin: never its query, where a signature would be, nor credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return _short(f"{parts.scheme}://{host}")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # a URLError's, the socket error
    cause = reason if isinstance(reason, BaseException) else exc
    if isinstance(cause, InvalidURL | ValueError):
        return "a malformed URL"  # its text quotes the URL, query and all
    text = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return _short(str(text))


# -- the command ---------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``tooltool-gateway check``: run the checks, one line each; the exit code says how."""
    args = _parser().parse_args(argv)
    authorize = None
    if args.authentication_file is not None:
        try:
            authorize = authorization(args.authentication_file)
        except (OSError, UnicodeError, ValueError) as exc:
            print(
                f"AuthenticationFile: cannot use {args.authentication_file}: {_reason(exc)}",
                file=sys.stderr,
            )
            return EXIT_SETTINGS
    deployment = Deployment(args.url, timeout=args.timeout)
    try:
        outcomes = run_checks(
            deployment,
            public=args.public,
            internal=args.internal,
            authorize=authorize,
            report=lambda outcome: print(outcome.line(), flush=True),
        )
    except Unreachable as exc:
        print(f"Unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_PASSED if all(outcome.passed for outcome in outcomes) else EXIT_FAILED


def authorization(path: Path) -> Authorize:
    """What the legacy client sends with `path`: Hawk for a JSON ``{"clientId",
    "accessToken"}``, else ``Bearer <the file's text>``."""
    text = path.read_text()
    try:
        credentials = json.loads(text)
    except ValueError:
        credentials = None
    if isinstance(credentials, dict) and {"clientId", "accessToken"} <= credentials.keys():
        hawk = {"id": credentials["clientId"], "key": credentials["accessToken"]}

        def signed(url: str) -> str:
            sender = mohawk.Sender(
                {**hawk, "algorithm": "sha256"}, url, "GET", content="", content_type=""
            )
            return str(sender.request_header)

        return signed
    token = text.strip()
    if not token or any(not c.isprintable() for c in token):
        raise ValueError("neither Taskcluster credentials nor a token")
    return lambda url: f"Bearer {token}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tooltool-gateway check",
        description="The runbook's checks against a deployment: one PASS or FAIL line each.",
    )
    parser.add_argument("url", type=_base_url, help="the deployment's base URL")
    parser.add_argument("--public", type=_digest, required=True, help="a public file's sha512")
    parser.add_argument("--internal", type=_digest, required=True, help="an internal file's")
    parser.add_argument(
        "--authentication-file",
        type=Path,
        help="credentials as tooltool.py takes them: also check the internal file downloads",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds per request, whole (default 10)"
    )
    return parser


def _base_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        parts = urlsplit("")
    if parts.username is not None or parts.password is not None:
        raise argparse.ArgumentTypeError(
            f"credentials in the URL are not sent: use --authentication-file ({_shown(text)})"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise argparse.ArgumentTypeError(f"not an http(s) base URL: {_shown(text)}")
    return text


def _digest(text: str) -> str:
    if not _DIGEST.fullmatch(text.lower()):
        raise argparse.ArgumentTypeError("not a sha512 digest (128 hexadecimal characters)")
    return text.lower()


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError("not a number of seconds between 0 and 3600")
    return seconds
