"""The server protocol over raw sockets: head limits (431), malformed HTTP (400), both as
problem JSON, and everything a head limit must leave alone (bodies, pipelining)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.cli import SERVER_OPTIONS
from gateway.server import DEFAULT_MAX_HEADERS, DEFAULT_MAX_LINE, http_protocol
from tests.conftest import free_port
from tests.gateway.test_download import assert_problem

LINE = DEFAULT_MAX_LINE
HEADERS = DEFAULT_MAX_HEADERS
LINE_DETAIL = f"A header line is over {LINE} bytes"
REQUEST_LINE_DETAIL = f"The request line is over {LINE} bytes"
HEADERS_DETAIL = f"The headers are over {HEADERS} bytes"


class Echo:
    """An app that says what it received, and counts the requests that reached it."""

    def __init__(self) -> None:
        self.requests = 0
        self.app = Starlette(
            routes=[
                Route("/early", self.early, methods=["POST"]),
                Route("/{path:path}", self.echo, methods=["GET", "PUT"]),
            ]
        )

    async def early(self, request: Request) -> JSONResponse:
        """Answers without reading the body, as a 401 for an upload does."""
        return JSONResponse({"early": True}, status_code=401)

    async def echo(self, request: Request) -> JSONResponse:
        self.requests += 1
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse(
            {"path": len(request.url.path), "headers": len(request.headers.raw), "body": size}
        )


class Connection:
    """A client connection reading answers one at a time, pipelined or not."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self.sock.makefile("rb")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer:
        status_line = self._reader.readline()
        assert status_line, "closed without an answer"
        headers = {}
        while (line := self._reader.readline()) != b"\r\n":
            assert line, "closed in the middle of an answer"
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self._reader.read(int(headers["content-length"]))
        return Answer(int(status_line.split()[1]), headers, body)

    def is_closed(self) -> bool:
        try:
            return self._reader.read(1) == b""
        except ConnectionResetError:  # closed with part of the request unread
            return True


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    echo: Echo

    def connect(self) -> Connection:
        return Connection(self.port)

    def exchange(self, *parts: bytes) -> tuple[Answer, bool]:
        """Send `parts` as separate writes on a new connection: the answer, and whether the
        server then closed the connection (waited for only if the answer says it will)."""
        with self.connect() as connection:
            for index, part in enumerate(parts):
                if index:
                    time.sleep(0.02)  # separate reads on the server's side
                with contextlib.suppress(OSError):  # it may answer and close first
                    connection.send(part)
            answer = connection.answer()
            is_closing = answer.headers.get("connection") == "close"
            return answer, is_closing and connection.is_closed()


def assert_refused(answer: Answer, closed: bool, status: int, detail: str) -> None:
    body = assert_problem(answer, status)
    assert body["detail"] == detail
    assert answer.headers["connection"] == "close"
    assert len(answer.headers["x-request-id"]) == 32  # refused below the app: an id of its own
    assert closed


def assert_echoed(answer: Answer, **expected: int) -> None:
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json().items() >= expected.items()


@contextlib.contextmanager
def serving(app: Any, protocol: type) -> Iterator[int]:
    port = free_port()
    options = {**SERVER_OPTIONS, "http": protocol, "loop": "uvloop"}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    echo = Echo()
    with serving(echo.app, http_protocol()) as port:
        yield Server(port, echo)


def request(path: str = "/", *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
    return "".join(line + "\r\n" for line in lines).encode() + b"\r\n" + body


def header_line(length: int, name: str = "X-Pad") -> str:
    """A header line of `length` bytes, its CRLF included."""
    return f"{name}: " + "a" * (length - len(name) - 4)


def head_of(total: int) -> bytes:
    """A GET whose head is exactly `total` bytes, in lines of at most 8 KiB."""
    left = total - len(request())
    sizes = []
    while left > 2 * 8192:
        sizes.append(8192)
        left -= 8192
    sizes += [left // 2, left - left // 2]
    raw = request("/", *(header_line(size, f"X-{index}") for index, size in enumerate(sizes)))
    assert len(raw) == total
    return raw


# 431: over a limit.


def test_a_long_header_line_is_431(server: Server) -> None:
    before = server.echo.requests
    answer, closed = server.exchange(request("/", header_line(17 * 1024)))
    assert_refused(answer, closed, 431, LINE_DETAIL)
    assert server.echo.requests == before


def test_headers_over_64_kib_in_all_are_431(server: Server) -> None:
    lines = [header_line(1000, f"X-{index}") for index in range(70)]
    answer, closed = server.exchange(request("/", *lines))
    assert_refused(answer, closed, 431, HEADERS_DETAIL)


def test_a_long_request_line_is_431(server: Server) -> None:
    answer, closed = server.exchange(request("/" + "a" * (17 * 1024)))
    assert_refused(answer, closed, 431, REQUEST_LINE_DETAIL)


def test_a_long_line_sent_in_small_pieces_is_431(server: Server) -> None:
    raw = request("/", header_line(20 * 1024))
    pieces = [raw[offset : offset + 4096] for offset in range(0, len(raw), 4096)]
    answer, closed = server.exchange(*pieces)
    assert_refused(answer, closed, 431, LINE_DETAIL)


def test_a_huge_header_is_cut_off_without_holding_others(server: Server) -> None:
    """One connection streams 100 MB of header; others are answered meanwhile, the server's
    memory stays put, and the streamer gets a 431 long before it is done."""
    result: dict[str, Any] = {}

    def stream() -> None:
        with server.connect() as connection:
            connection.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Huge: ")
            chunk = b"a" * (1 << 20)
            result["sent"] = 0
            with contextlib.suppress(OSError):
                while result["sent"] < 100 << 20:
                    connection.send(chunk)
                    result["sent"] += len(chunk)
            try:
                result["answer"] = connection.answer()
            except OSError as exc:
                result["answer"] = exc

    rss_before = _rss()
    streamer = threading.Thread(target=stream)
    streamer.start()
    peak = rss_before
    slowest = 0.0
    while streamer.is_alive() or slowest == 0:
        started = time.monotonic()
        answer, _ = server.exchange(request("/", "Connection: close"))
        slowest = max(slowest, time.monotonic() - started)
        assert_echoed(answer, body=0)
        peak = max(peak, _rss())
    streamer.join()
    assert slowest < 2
    assert peak - rss_before < 30 << 20
    assert result["sent"] < 16 << 20
    assert isinstance(result["answer"], Answer), result["answer"]
    assert_refused(result["answer"], True, 431, LINE_DETAIL)


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# At the limits, and what they must not count.


# Where the head is split between writes: whole, inside its last line, across its end.
SPLITS = [None, 100, -1, -2, -3, -4]


def _split(raw: bytes, at: int | None) -> tuple[bytes, ...]:
    return (raw,) if at is None else (raw[:at], raw[at:])


@pytest.mark.parametrize("split", SPLITS)
def test_a_header_line_at_the_limit_is_accepted(server: Server, split: int | None) -> None:
    raw = request("/", header_line(LINE))
    answer, _ = server.exchange(*_split(raw, split))
    assert_echoed(answer, headers=2)
    answer, closed = server.exchange(*_split(request("/", header_line(LINE + 1)), split))
    assert_refused(answer, closed, 431, LINE_DETAIL)


@pytest.mark.parametrize("split", SPLITS)
def test_a_head_at_the_limit_is_accepted(server: Server, split: int | None) -> None:
    answer, _ = server.exchange(*_split(head_of(HEADERS), split))
    assert_echoed(answer)
    answer, closed = server.exchange(*_split(head_of(HEADERS + 1), split))
    assert_refused(answer, closed, 431, HEADERS_DETAIL)


def test_a_request_line_at_the_limit_is_accepted(server: Server) -> None:
    path = "/" + "a" * (LINE - len("GET / HTTP/1.1\r\n"))
    answer, _ = server.exchange(request(path))
    assert_echoed(answer, path=len(path))
    answer, closed = server.exchange(request(path + "a"))
    assert_refused(answer, closed, 431, REQUEST_LINE_DETAIL)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_body_is_not_counted(server: Server, chunked: bool) -> None:
    size = 8 << 20
    if chunked:
        piece = b"b" * (1 << 20)
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(8)) + b"0\r\n\r\n"
        header = "Transfer-Encoding: chunked"
    else:
        body = b"\n" * size  # many short "lines" too
        header = f"Content-Length: {size}"
    answer, _ = server.exchange(request("/", header, method="PUT", body=body))
    assert_echoed(answer, body=size)


def test_pipelined_requests_are_each_answered(server: Server) -> None:
    with server.connect() as connection:
        connection.send(request("/one") + request("/second"))
        assert_echoed(connection.answer(), path=4)
        assert_echoed(connection.answer(), path=7)


def test_pipelined_requests_each_get_the_whole_budget(server: Server) -> None:
    """Large heads and a body pipelined into one write, the last head finished by another."""
    near = head_of(HEADERS - 100)
    body = b"x" * (3 * LINE)
    put = request("/put", f"Content-Length: {len(body)}", method="PUT", body=body)
    second = head_of(HEADERS)
    with server.connect() as connection:
        connection.send(near + put + second[:5000])
        time.sleep(0.05)
        connection.send(second[5000:])
        assert_echoed(connection.answer(), path=1)
        assert_echoed(connection.answer(), path=4, body=len(body))
        assert_echoed(connection.answer(), path=1)
        connection.send(head_of(HEADERS + 1))
        assert_refused(connection.answer(), connection.is_closed(), 431, HEADERS_DETAIL)


def test_a_refused_pipelined_request_is_answered_after_the_ones_before(server: Server) -> None:
    before = server.echo.requests
    with server.connect() as connection:
        connection.send(request("/one") + request("/two") + request("/", header_line(LINE + 1)))
        assert_echoed(connection.answer(), path=4)
        assert_echoed(connection.answer(), path=4)
        assert_refused(connection.answer(), connection.is_closed(), 431, LINE_DETAIL)
    assert server.echo.requests == before + 2


def test_an_upgrade_is_a_plain_request(server: Server) -> None:
    upgrade = request("/", "Connection: Upgrade", "Upgrade: websocket")
    answer, closed = server.exchange(upgrade)
    assert_echoed(answer, headers=3)
    assert not closed


def test_keep_alive_requests_each_get_the_whole_budget(server: Server) -> None:
    with server.connect() as connection:
        for _ in range(3):
            connection.send(head_of(HEADERS))
            assert_echoed(connection.answer())


# 400: malformed HTTP, as problem JSON instead of uvicorn's plain text.

MALFORMED = {
    "content-length-and-chunked": (
        request("/", "Content-Length: 3", "Transfer-Encoding: chunked", method="PUT", body=b"abc"),
        "Transfer-Encoding can't be present with Content-Length",
    ),
    "garbage": (b"NONSENSE\r\n\r\n", "Invalid method encountered"),
    "header-value": (request("/", "X-Bad: \x01"), "Invalid header value char"),
    "bad-chunk": (
        request("/", "Transfer-Encoding: chunked", method="PUT", body=b"zz\r\nab\r\n0\r\n\r\n"),
        "Invalid character in chunk size",
    ),
    "obs-fold": (request("/", "X-A: b", " folded"), "Unexpected whitespace after header value"),
    "bare-lf": (b"GET / HTTP/1.1\nHost: test\n\n", "Expected CRLF after version"),
    "url": (b"GET http://[ HTTP/1.1\r\nHost: test\r\n\r\n", "invalid URL"),
}


@pytest.mark.parametrize(("raw", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_400_problem_json(server: Server, raw: bytes, reason: str) -> None:
    answer, closed = server.exchange(raw)
    assert_refused(answer, closed, 400, f"Invalid HTTP request: {reason}")


def test_the_server_keeps_serving_after_refusals(server: Server) -> None:
    answer, closed = server.exchange(b"NONSENSE\r\n\r\n")
    assert_refused(answer, closed, 400, "Invalid HTTP request: Invalid method encountered")
    answer, closed = server.exchange(request("/", header_line(LINE + 1)))
    assert_refused(answer, closed, 431, LINE_DETAIL)
    assert_echoed(server.exchange(request("/after"))[0], path=6)


@pytest.mark.parametrize(("max_line", "max_headers"), [(0, 10), (100, 99), (-1, -1)])
def test_limits_must_make_sense(max_line: int, max_headers: int) -> None:
    with pytest.raises(ValueError, match="max_line"):
        http_protocol(max_line=max_line, max_headers=max_headers)


def test_smaller_limits_apply() -> None:
    echo = Echo()
    with serving(echo.app, http_protocol(max_line=200, max_headers=400)) as port:
        small = Server(port, echo)
        assert_echoed(small.exchange(request("/", header_line(200)))[0])
        answer, closed = small.exchange(request("/", header_line(201)))
        assert_refused(answer, closed, 431, "A header line is over 200 bytes")
        answer, closed = small.exchange(
            request("/", *[header_line(100, f"X-{i}") for i in range(4)])
        )
        assert_refused(answer, closed, 431, "The headers are over 400 bytes")


# After a chunked body: trailers and framing are held to the head's limit, never headers.

CHUNKED_HEAD = request("/", "Transfer-Encoding: chunked", method="PUT")


def test_trailers_are_not_the_requests_headers(server: Server) -> None:
    """A trailer never reaches the app as a header (a proxy that filters headers but
    passes trailers must not be bypassed)."""
    plain = request("/")
    chunked = CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nAuthorization: Bearer x\r\nX-A: 1\r\n\r\n"
    with server.connect() as connection:
        connection.send(plain + chunked)  # pipelined: the app starts after the trailers
        first, second = connection.answer(), connection.answer()
    assert_echoed(first, headers=1)
    assert_echoed(second, headers=2, body=5)  # Host and Transfer-Encoding only


def test_endless_trailers_are_431_in_bounded_memory(server: Server) -> None:
    before = _rss()
    with server.connect() as connection:
        connection.send(CHUNKED_HEAD + b"1\r\na\r\n0\r\n")
        with contextlib.suppress(OSError):
            for _ in range(2000):  # up to 128 MiB: refused long before
                connection.send((b"X-T: " + b"v" * 1000 + b"\r\n") * 64)
        answer = connection.answer()
    detail = f"The chunk framing and trailers are over {HEADERS} bytes"
    assert assert_problem(answer, 431)["detail"] == detail
    assert _rss() - before < 30 * 1024 * 1024


def test_one_endless_trailer_value_is_431(server: Server) -> None:
    started = time.monotonic()
    with server.connect() as connection:
        connection.send(CHUNKED_HEAD + b"1\r\na\r\n0\r\nX-T: ")
        with contextlib.suppress(OSError):
            for _ in range(1000):  # up to 64 MiB
                connection.send(b"v" * 65536)
        assert connection.answer().status_code == 431
    assert time.monotonic() - started < 10  # was minutes: quadratic copying


def test_chunk_extensions_without_data_are_431(server: Server) -> None:
    with server.connect() as connection:
        connection.send(CHUNKED_HEAD + b"1;" + b"e" * 1000)
        with contextlib.suppress(OSError):
            for _ in range(200):
                connection.send(b"e" * 4096)
        assert connection.answer().status_code == 431


def test_many_small_chunks_are_a_body_not_framing(server: Server) -> None:
    body = b"".join(b"1\r\nx\r\n" for _ in range(30_000)) + b"0\r\n\r\n"
    answer, _ = server.exchange(CHUNKED_HEAD + body)
    assert_echoed(answer, body=30_000)


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# A deadline for the head: silent and trickling connections are refused (slowloris).


@pytest.fixture(scope="module")
def impatient() -> Iterator[Server]:
    echo = Echo()
    with serving(echo.app, http_protocol(header_timeout=1)) as port:
        yield Server(port, echo)


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HT"],
    ids=["nothing", "no-empty-line", "part-of-a-line"],
)
def test_a_head_not_sent_in_time_is_408(impatient: Server, sent: bytes) -> None:
    started = time.monotonic()
    with impatient.connect() as connection:
        if sent:
            connection.send(sent)
        answer = connection.answer()
        assert connection.is_closed()
    body = assert_problem(answer, 408)
    assert body["detail"] == "No complete request headers within 1 s"
    assert body["title"] == "408 Request Timeout: No complete request headers within 1 s"
    assert 0.9 < time.monotonic() - started < 5


def test_a_trickled_head_is_408_however_steady(impatient: Server) -> None:
    with impatient.connect() as connection:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            connection.send(b"GET / HTTP/1.1\r\n")
            for number in range(30):
                time.sleep(0.1)
                connection.send(f"X-{number}: y\r\n".encode())
        assert connection.answer().status_code == 408
    assert time.monotonic() - started < 5


def test_a_slow_answer_is_not_cut_short(impatient: Server) -> None:
    """The deadline is for heads: a body taking longer (a large upload) is not cut."""
    with impatient.connect() as connection:
        connection.send(request("/", "Content-Length: 30", method="PUT"))
        for _ in range(3):
            time.sleep(0.6)
            connection.send(b"x" * 10)
        assert_echoed(connection.answer(), body=30)
        # Keep-alive: the next head is timed from the end of that answer.
        time.sleep(0.5)
        connection.send(request("/"))
        assert_echoed(connection.answer())


def test_the_header_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        http_protocol(header_timeout=0)


def test_an_early_answer_while_the_body_still_arrives_is_the_only_answer(
    impatient: Server,
) -> None:
    """The head deadline waits for the request's body to end, not just for its answer."""
    with impatient.connect() as connection:
        connection.send(request("/early", "Content-Length: 30", method="POST"))
        assert connection.answer().status_code == 401
        for _ in range(3):  # the rest of the body, past the 1 s deadline
            time.sleep(0.6)
            connection.send(b"x" * 10)
        connection.send(request("/"))
        assert_echoed(connection.answer())
