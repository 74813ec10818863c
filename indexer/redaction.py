"""Secrets never reach a log line: tokens, signatures, Hawk MACs, Authorization headers.

Every formatter of :mod:`indexer.logs` passes each line it writes through
:func:`redact`. It is the last line of defence: the code logs no request
headers, no signed URL queries and no response bodies in the first place, and
exceptions are logged by type and frames, never by ``repr`` of their
arguments (``repr(UnicodeEncodeError)`` holds the whole string it failed on,
which was once a rendered ``POST /token`` answer with a valid JWT in it).
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# (words one of which the line must hold, lowercased; the pattern; its replacement). The
# words let a line without any (nearly every line: a request summary, say) skip the
# patterns, whose case-insensitive scans cost several microseconds each.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # JWTs (header.payload.signature, base64url; the header always starts with '{"').
    (("eyj",), re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization schemes with their credentials.
    (("bearer",), re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), r"\1 " + REDACTED),
    (
        ("basic",),
        # base64 of "id:token": a digit, + / or =, or too long to be a word
        re.compile(r"\b(Basic)\s+(?=[A-Za-z]*[0-9+/=]|[A-Za-z]{16})[A-Za-z0-9+/=]{8,}", re.I),
        r"\1 " + REDACTED,
    ),
    (("hawk",), re.compile(r"\b(Hawk)\s+id\s*=[^\n]*", re.I), r"\1 " + REDACTED),
    (
        ("aws4-hmac-sha256",),
        re.compile(r"\b(AWS4-HMAC-SHA256)\s+Credential=[^\n]*", re.I),
        r"\1 " + REDACTED,
    ),
    # Hawk attributes and signed-URL query parameters that prove possession of a key.
    (
        ("mac", "hash", "nonce", "ext", "bewit"),
        re.compile(r"\b(mac|hash|nonce|ext|bewit)\s*=\s*(\\?\")[^\"\\]*(\\?\")", re.I),
        r"\1=\2" + REDACTED + r"\3",
    ),
    (
        ("sig", "token", "secret", "password", "bewit"),
        re.compile(
            r"\b(X-Amz-Signature|X-Amz-Security-Token|Signature|signature|sig|bewit|token"
            r"|accessToken|access_token|secret|password)(=|%3D)[^&\s\"'\\]+",
            re.I,
        ),
        r"\1\2" + REDACTED,
    ),
    # JSON members (and Python reprs of dicts) holding credentials.
    (
        ("token", "secret", "password", "authorization"),
        re.compile(
            r"(\\?[\"'](?:accessToken|access_token|token|secret|password|authorization)"
            r"\\?[\"']\s*:\s*)(\\?[\"'])[^\"'\\]*(\\?[\"'])",
            re.I,
        ),
        r"\1\2" + REDACTED + r"\3",
    ),
    # Credentials in a URL's authority (https://user:password@host).
    (("@",), re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@\"']+@", re.I), r"\1" + REDACTED + "@"),
)


def redact(text: str) -> str:
    """`text` with every credential-looking part replaced by ``[redacted]``."""
    lowered = text.lower()
    for words, pattern, replacement in _PATTERNS:
        if any(word in lowered for word in words):
            text = pattern.sub(replacement, text)
    return text
