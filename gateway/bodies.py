"""Request bodies and text inputs: read once, size-limited, checked before anything is written."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

from gateway.errors import BadRequest, PayloadTooLarge
from indexer.strict_json import NotUnicodeText, StrictJsonError, loads_strict

DEFAULT_LIMIT = 1024 * 1024
# C0 controls but tab, newline and carriage return; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


async def read_body(request: Request, limit: int = DEFAULT_LIMIT) -> bytes:
    """The whole body, or a 413 as soon as it passes `limit` (chunked bodies too).

    Kept on the request, so authentication (Hawk payload hashes) and the
    endpoint read it once.
    """
    cached = getattr(request.state, "body", None)
    if cached is not None:
        return cached
    length = request.headers.get("content-length", "0")
    if length.isascii() and length.isdigit() and int(length[:20]) > limit:
        raise PayloadTooLarge()
    parts: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge()
            parts.append(chunk)
    except ClientDisconnect:
        raise BadRequest("The client disconnected while sending the body") from None
    body = b"".join(parts)
    request.state.body = body
    return body


def parse_json(body: bytes, what: str = "The request body") -> Any:
    """A JSON document that every reader can use again (:mod:`indexer.strict_json`): a
    lone surrogate escape (``"\udfff"``), ``NaN`` or deep nesting anywhere is a 400."""
    try:
        return loads_strict(body)
    except NotUnicodeText:
        raise BadRequest(f"{what} holds text that is not valid Unicode") from None
    except StrictJsonError:
        raise BadRequest(f"{what} must be JSON") from None


def is_text(value: str, *, multiline: bool = False) -> bool:
    """True for valid Unicode text without control characters (tab and newlines allowed
    when `multiline`)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    pattern = _CONTROL if multiline else _LINE_CONTROL
    return pattern.search(value) is None


def query_text(request: Request, name: str, *, max_length: int = 256) -> str | None:
    """A query parameter that must be short, single-line text, or a 400 saying so."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if len(value) > max_length or not is_text(value):
        raise BadRequest(
            f"{name} must be text of at most {max_length} characters, without control characters"
        )
    return value
