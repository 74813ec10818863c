"""Requests whose bodies never end (a slowloris), called on an ASGI app in process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp


async def post(
    app: ASGIApp,
    path: str,
    parts: list[bytes],
    *,
    ends: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST `parts` of a chunked body to `path`: the status and JSON body answered. Unless
    `ends`, the body's end never comes (the call waits until cancelled, or answered)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"transfer-encoding", b"chunked"),
            *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    waiting = list(parts)
    answers: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if waiting:
            body = waiting.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(waiting) or not ends}
        await asyncio.Event().wait()  # the rest of the body never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in answers[1:])
    return answers[0]["status"], json.loads(body)


def answered_behind(
    app: ASGIApp,
    path: str,
    body: bytes,
    *,
    stalled: int,
    headers: dict[str, str] | None = None,
    stalled_headers: dict[str, str] | None = None,
    timeout: float = 5,
) -> tuple[int, Any]:
    """What `app` answers a whole `body` sent with `headers` after `stalled` requests (with
    `stalled_headers`, else `headers`) whose bodies never end; a TimeoutError when it does
    not answer within `timeout` seconds."""
    slow_headers = headers if stalled_headers is None else stalled_headers

    async def scenario() -> tuple[int, Any]:
        waiting = [
            asyncio.create_task(
                post(app, path, [body[:1], body[1:2]], ends=False, headers=slow_headers)
            )
            for _ in range(stalled)
        ]
        await asyncio.sleep(0.1)  # each is waiting for the rest of its body
        try:
            return await asyncio.wait_for(post(app, path, [body], headers=headers), timeout)
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    return asyncio.run(scenario())
