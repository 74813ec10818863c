"""The server writes a response's head with its first body write: the bytes on the wire
are unchanged, whatever the body holds, for HEAD, streamed bodies, 100 Continue and
pipelined requests (gateway/server.py `_HeadHoldingTransport`)."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port

# A body that looks like a response head, in chunks: nothing of it may be held back.
LOOKALIKE = [b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"tail"]


async def streamed(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in LOOKALIKE:
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def small(request: Request) -> Response:
    body = await request.body()
    return Response(b"got " + str(len(body)).encode(), media_type="text/plain")


APP = Starlette(
    routes=[Route("/stream", streamed), Route("/small", small, methods=["GET", "HEAD", "PUT"])]
)


def exchange(port: int, request: bytes, *, until: bytes) -> bytes:
    """Send `request` and read until the answer ends with `until` (or the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        received = b""
        while not received.endswith(until):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_bodies_that_look_like_heads_arrive_whole(live_server: Callable[..., Any]) -> None:
    port = free_port()
    live_server(APP, port)
    answer = exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", until=b"0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head
    assert all(chunk in body for chunk in LOOKALIKE)
    assert body.endswith(b"0\r\n\r\n")


def test_head_requests_and_pipelined_requests_get_every_answer(
    live_server: Callable[..., Any],
) -> None:
    port = free_port()
    live_server(APP, port)
    request = b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = exchange(port, request, until=b"got 0")
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.endswith(b"got 0")


def test_100_continue_is_not_held(live_server: Callable[..., Any]) -> None:
    port = free_port()
    live_server(APP, port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            b"PUT /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = connection.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"hello")
        final = b""
        while not final.endswith(b"got 5"):
            chunk = connection.recv(65536)
            assert chunk
            final += chunk
    assert final.startswith(b"HTTP/1.1 200 OK")


RELEASE = threading.Event()


async def waiting_stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        await anyio.to_thread.run_sync(RELEASE.wait, 10)  # until the client has the head
        yield b"event: ready\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def test_the_head_of_a_streamed_body_is_never_held(live_server: Callable[..., Any]) -> None:
    port = free_port()
    live_server(Starlette(routes=[Route("/events", waiting_stream)]), port)
    RELEASE.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        head = connection.recv(65536)  # a held head would time out here
        assert head.startswith(b"HTTP/1.1 200 OK")
        RELEASE.set()
        body = b""
        while b"event: ready" not in body:
            chunk = connection.recv(65536)
            assert chunk
            body += chunk
