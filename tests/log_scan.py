"""Every log record of a test run, formatted as production formats it, scanned for secrets.

The plugin part (``LogRecorder``) is installed by ``tests/conftest.py``; the
scan itself is the last test of the run (``tests/test_log_scan.py``).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field

from indexer.logs import make_handler, quiet_libraries

# What a secret looks like when it was not redacted.
SECRET_PATTERNS = {
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "a Hawk MAC": re.compile(r"\bmac\s*=\s*\\?\"(?!\[redacted\])[^\"\\]+"),
    "a URL signature": re.compile(
        r"(?i)\b(signature|X-Amz-Signature|X-Amz-Security-Token)=(?!\[redacted\])[^&\s\"']+"
    ),
    "an Authorization header": re.compile(
        r"(?i)\b(Bearer|Basic|Hawk|AWS4-HMAC-SHA256)\s+(?!\[redacted\])"
        r"(id=|Credential=|(?=[A-Za-z0-9+/=._-]*[0-9+/=])[A-Za-z0-9+/=._-]{8,})"
    ),
}


@dataclass
class LogRecorder:
    """A root handler per production format, kept attached for the whole run."""

    buffers: dict[str, io.StringIO] = field(default_factory=dict)
    handlers: list[logging.Handler] = field(default_factory=list)

    def __post_init__(self) -> None:
        for log_format in ("mozlog", "text"):
            buffer = self.buffers[log_format] = io.StringIO()
            handler = make_handler(buffer, log_format=log_format)
            handler.setLevel(logging.DEBUG)
            self.handlers.append(handler)

    def attach(self) -> None:
        """(Re)attach to the root logger at DEBUG: tests that configure logging replace it."""
        root = logging.getLogger()
        for handler in self.handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        if root.level > logging.DEBUG or root.level == logging.NOTSET:
            root.setLevel(logging.DEBUG)
        quiet_libraries()

    def lines(self) -> list[str]:
        return [line for buffer in self.buffers.values() for line in buffer.getvalue().splitlines()]


def leaks(lines: list[str], known_secrets: list[str]) -> list[str]:
    """Every line holding a known secret or something shaped like one, with what it holds."""
    found = []
    for line in lines:
        for name, pattern in SECRET_PATTERNS.items():
            if pattern.search(line):
                found.append(f"{name}: {line[:300]}")
        for secret in known_secrets:
            if secret in line:
                found.append(f"a known secret: {line[:300]}")
    return found
