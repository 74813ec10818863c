"""Request bodies, read once, with a size limit enforced while reading."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from gateway.errors import BadRequest, PayloadTooLarge

DEFAULT_LIMIT = 1024 * 1024


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
