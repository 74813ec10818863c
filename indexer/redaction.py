"""Secrets never reach a log line: tokens, signatures, Hawk MACs, Authorization headers.

Every formatter of :mod:`gateway.logs` passes each string it writes through
:func:`redact`. It is the last line of defence: the code logs no request
headers, no signed URL queries and no response bodies in the first place, and
exceptions are logged by type and frames, never by ``repr`` of their
arguments (``repr(UnicodeEncodeError)`` holds the whole string it failed on,
which was once a rendered ``POST /token`` answer with a valid JWT in it).
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JWTs (header.payload.signature, base64url; the header always starts with '{"').
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization schemes with their credentials.
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), r"\1 " + REDACTED),
    (
        # base64 of "id:token": a digit, + / or =, or too long to be a word
        re.compile(r"\b(Basic)\s+(?=[A-Za-z]*[0-9+/=]|[A-Za-z]{16})[A-Za-z0-9+/=]{8,}", re.I),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"\b(Hawk)\s+id\s*=[^\n]*", re.I), r"\1 " + REDACTED),
    (re.compile(r"\b(AWS4-HMAC-SHA256)\s+Credential=[^\n]*", re.I), r"\1 " + REDACTED),
    # Hawk attributes and signed-URL query parameters that prove possession of a key.
    (
        re.compile(r"\b(mac|hash|nonce|ext|bewit)\s*=\s*(\\?\")[^\"\\]*(\\?\")", re.I),
        r"\1=\2" + REDACTED + r"\3",
    ),
    (
        re.compile(
            r"\b(X-Amz-Signature|X-Amz-Security-Token|Signature|signature|sig|bewit|token"
            r"|accessToken|access_token|secret|password)(=|%3D)[^&\s\"'\\]+",
            re.I,
        ),
        r"\1\2" + REDACTED,
    ),
    # JSON members (and Python reprs of dicts) holding credentials.
    (
        re.compile(
            r"(\\?[\"'](?:accessToken|access_token|token|secret|password|authorization)"
            r"\\?[\"']\s*:\s*)(\\?[\"'])[^\"'\\]*(\\?[\"'])",
            re.I,
        ),
        r"\1\2" + REDACTED + r"\3",
    ),
    # Credentials in a URL's authority (https://user:password@host).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@\"']+@", re.I), r"\1" + REDACTED + "@"),
)


def redact(text: str) -> str:
    """`text` with every credential-looking part replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
