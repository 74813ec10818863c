"""The HTTP/1.1 server protocol: uvicorn's httptools protocol with header limits and problem JSON.

uvicorn's httptools protocol puts no limit on the request line or the header block
(its h11 protocol has ``h11_max_incomplete_event_size``; see uvicorn issue #157), and
httptools builds a header value that arrives over several reads by concatenating
bytes objects, which is quadratic. One anonymous connection sending a 128 MB header
made other requests wait up to 6 s; at 1 GB nothing answered for minutes and memory
reached 1.7 GB. So a head (request line and header lines) is limited here as common
proxies limit it, AWS's load balancer for one: 16 KiB a line, 64 KiB in all. Over a
limit, the answer is 431 and the connection is closed.

How it stays bounded, and cheap in the usual case:

- A read that cannot take a head over a limit (it is at most one line's limit, counting
  what the unfinished head already holds) goes to the parser whole. A small request in
  one read, the gateway's hot path, costs a few attribute updates more than in stock
  uvicorn: about 0.4 µs, within the noise of bench/bench_http.py.
- Otherwise the head's bytes are checked *before* the parser sees them: the line
  lengths and the total, up to the head's end (``\\r\\n\\r\\n``: llhttp accepts no bare
  LF). Only what passes is fed, so httptools never holds more than the limits, and the
  request is refused before it reaches the app.
- Bodies are not counted. A large read in a body is fed in slices of one line's limit,
  so a request pipelined behind a body is never parsed unchecked beyond one slice; its
  share of that slice is what follows the body (exact after Content-Length and chunked
  bodies) and counts against its budget. Every request gets a fresh budget.

Every error this service answers is problem JSON (:mod:`gateway.errors`), and the HTTP
errors uvicorn answers itself in plain text (both Content-Length and Transfer-Encoding,
bad chunking, invalid characters, …) are answered here in that shape too, with llhttp's
reason, which never echoes request bytes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, ClassVar

import httptools
from dockerflow.logging import request_id_context
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.errors import problem_response
from indexer.metrics import Family

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_LINE",
    "HttpProtocol",
    "http_protocol",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_LINE = 16 * 1024  # request line or one header line
DEFAULT_MAX_HEADERS = 64 * 1024  # request line + all header lines
DEFAULT_HEADER_TIMEOUT = 15.0  # seconds to send a whole head (slowloris)
_SWEEP_INTERVAL = 1.0

_END = b"\r\n\r\n"  # the end of a head; llhttp refuses bare LF line ends
_INVALID = "Invalid HTTP request"
_REFUSED = 1 << 62  # a head size no read can come under


def http_protocol(
    *,
    max_line: int = DEFAULT_MAX_LINE,
    max_headers: int = DEFAULT_MAX_HEADERS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    refused: Family | None = None,
) -> type[HttpToolsProtocol]:
    """An `HttpProtocol` class with these limits, for ``uvicorn.Config(app, http=...)``.

    Both sizes count bytes as sent, line ends included: `max_line` bounds the request
    line and each header line, `max_headers` the whole head (request line, header lines
    and the empty line ending them). `header_timeout` is how long a connection may take
    to send a whole head, from its opening or the end of the previous answer. `refused`
    counts the requests refused here, by status.
    """
    if not 0 < max_line <= max_headers:
        raise ValueError(
            f"http_protocol needs 0 < max_line <= max_headers, got max_line={max_line}"
            f" and max_headers={max_headers}"
        )
    if not header_timeout > 0:
        raise ValueError(f"http_protocol needs header_timeout > 0, got {header_timeout}")

    class LimitedHttpProtocol(HttpProtocol):
        pass

    LimitedHttpProtocol.max_line = max_line
    LimitedHttpProtocol.max_headers = max_headers
    LimitedHttpProtocol.header_timeout = header_timeout
    LimitedHttpProtocol.refused = refused
    return LimitedHttpProtocol


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol refusing oversized heads (431) and malformed HTTP (400)
    in problem JSON, with the default limits."""

    max_line: ClassVar[int] = DEFAULT_MAX_LINE
    max_headers: ClassVar[int] = DEFAULT_MAX_HEADERS
    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT
    refused: ClassVar[Family | None] = None  # counts refusals by status

    # Slots, not the instance dict: uvicorn's protocol already has 28 attributes there, and
    # a 31st makes CPython give up the split dict, which slows every attribute of a request.
    __slots__ = (
        "_body_bytes",
        "_framing_bytes",
        "_head_began",
        "_head_bytes",
        "_head_started",
        "_holding",
        "_in_head",
        "_line_bytes",
        "_refusal",
        "_tail",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Whether the parser is inside a head (before a request's headers are complete).
        self._in_head = True
        # Whether a request ended during the last feed, so the current head began in it.
        self._head_began = False
        # Of the current head: the bytes fed, those of its unfinished last line, its last three.
        self._head_bytes = 0
        self._line_bytes = 0
        self._tail = b""
        # Body bytes of the latest request, in the current feed.
        self._body_bytes = 0
        # The answer refusing a request, sent once the requests before it are answered
        # (HTTP answers in order); from then on nothing more is read.
        self._refusal: bytes | None = None
        # Bytes fed inside a body that carried no body byte: chunk sizes, extensions, trailers.
        self._framing_bytes = 0
        # When the connection began waiting for a head (None: not waiting).
        self._head_started: float | None = None
        # The cycle's transport holding a response head back, if one is (only the running
        # cycle writes; a pipelined one is `self.cycle` meanwhile).
        self._holding: _HeadHoldingTransport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        HttpToolsProtocol.connection_made(self, transport)
        self._head_started = self.loop.time()
        _HeadDeadlines.watch(self)

    def on_response_complete(self) -> None:
        holding = self._holding
        if holding is not None:
            holding.flush()  # a head without a body write (HEAD, an empty body)
        # The next head is awaited once both the answer and the request are whole: an app
        # may answer (a 401, say) before the body it does not want has all arrived.
        if self._in_head:
            self._head_started = self.loop.time()
        HttpToolsProtocol.on_response_complete(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        # After a chunked body, llhttp reports trailers as headers: they are never the
        # request's (uvicorn would add them to the headers the app already has).
        if self._in_head:
            HttpToolsProtocol.on_header(self, name, value)

    # uvicorn's entry point, and the parser callbacks that move between head and body. These
    # call the base class directly: super() costs a request more than it does here.

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._head_bytes + len(data) <= self.max_line:
            self._feed(data)  # nothing in it can be over a limit
        else:
            self._feed_large(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._line_bytes = self._body_bytes = self._framing_bytes = 0
        self._head_started = None
        self._tail = b""
        HttpToolsProtocol.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _HeadHoldingTransport(self)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        self._in_head = self._head_began = True
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:  # answered before its body ended
            self._head_started = self.loop.time()
        HttpToolsProtocol.on_message_complete(self)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, _INVALID)

    # Feeding the parser.

    def _feed_large(self, data: bytes) -> None:
        """Feed a read that could take a head over a limit: heads checked first, bodies in
        slices."""
        if self._refusal is not None:
            return  # what follows a refused request is not read
        position = 0
        while position < len(data):
            if self._in_head:
                size = self._head_step(data, position)
                if size < 0:
                    return
            else:
                size = self.max_line
            if not self._feed(data[position : position + size]):
                return
            position += size

    def _feed(self, piece: bytes) -> bool:
        """Feed `piece` to the parser and count it; False once the rest must not be fed."""
        began_in_head = self._in_head
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            # As uvicorn does, including dropping the rest of the read.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            self._refuse(400, _invalid_detail(exc))
            return False
        if not self._in_head:
            if self._body_bytes or began_in_head:
                self._framing_bytes = 0
            else:
                # Framing alone (a trailer, say) is held to the head's limit, before
                # httptools' copying of an unfinished value can grow with it.
                self._framing_bytes += len(piece)
                if self._framing_bytes > self.max_headers:
                    detail = f"The chunk framing and trailers are over {self.max_headers} bytes"
                    self._refuse(431, detail)
                    return False
            self._body_bytes = 0
        elif self._head_began and piece.endswith(_END):
            # The usual case: the piece ended with a request, and no other has begun.
            self._head_began = False
            self._body_bytes = 0
        else:
            self._count_head(piece, began_in_head)
        return True

    def _count_head(self, piece: bytes, began_in_head: bool) -> None:
        """Add what `piece` (just fed) holds of the head the parser is now inside."""
        if self._head_began:
            self._head_began = False
            piece = piece[self._head_start(piece, began_in_head) :]
        self._head_bytes += len(piece)
        newline = piece.rfind(b"\n")
        if newline < 0:
            self._line_bytes += len(piece)
        else:
            self._line_bytes = len(piece) - newline - 1
        self._tail = (self._tail + piece[-3:])[-3:]

    def _head_start(self, piece: bytes, began_in_head: bool) -> int:
        """Where in `piece` the head after the last request in it begins.

        That head holds no empty line yet, so it begins at or after the end of the piece's
        last one, which is exact after a bodiless request or a chunked body. After a
        Content-Length body it begins where that body ends: the body's bytes after the end
        of the head before it (or after the piece's start). Both bounds hold, so the later
        is taken. Only several requests with bodies pipelined into one piece can make it
        early, and by less than the piece.
        """
        last_end = piece.rfind(_END)
        start = last_end + 4 if last_end >= 0 else 0
        if self._body_bytes:
            first_end = piece.find(_END) if began_in_head else -1
            body_start = first_end + 4 if first_end >= 0 else 0
            start = max(start, body_start + self._body_bytes)
            self._body_bytes = 0
        return min(start, len(piece))

    def _head_step(self, data: bytes, position: int) -> int:
        """How many bytes of `data` from `position` to feed next: up to the head's end, or
        all the limits allow. Refuses the request and returns -1 if the head is over one."""
        room = self.max_headers - self._head_bytes
        window = data[position : position + room]
        end = self._head_end(window)
        head = window if end < 0 else window[:end]
        problem = self._long_line(head)
        if problem is None and end < 0 and len(data) - position > room:
            problem = f"The headers are over {self.max_headers} bytes"
        if problem is not None:
            self._refuse(431, problem)
            return -1
        return len(head)

    def _head_end(self, window: bytes) -> int:
        """Where in `window` the current head ends (just after its empty line), or -1."""
        straddling = (self._tail + window[:3]).find(_END)
        if straddling >= 0:
            return straddling + 4 - len(self._tail)
        end = window.find(_END)
        return end + 4 if end >= 0 else -1

    def _long_line(self, head: bytes) -> str | None:
        """Which line is over the limit if the head goes on with `head`, if any.

        An unfinished line counts one byte more: it needs at least its line feed.
        """
        lines = head.split(b"\n")
        if self._line_bytes + len(lines[0]) + 1 > self.max_line:
            is_request_line = self._head_bytes == self._line_bytes
            name = "The request line is" if is_request_line else "A header line is"
            return f"{name} over {self.max_line} bytes"
        if len(lines) > 1 and max(map(len, lines[1:])) + 1 > self.max_line:
            return f"A header line is over {self.max_line} bytes"
        return None

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` as problem JSON and close, once the requests before this one are
        answered; this one never reaches the app, and nothing after it is read."""
        if self.refused is not None:
            self.refused.inc((str(status),))
        # Refused below the app, so before its request-id middleware: an id of its own.
        request_id = uuid.uuid4().hex
        token = request_id_context.set(request_id)
        try:
            logger.warning("refused a request: %s", detail, extra={"client": self.client})
        finally:
            request_id_context.reset(token)
        response = problem_response(status, detail)
        headers = [
            *self.server_state.default_headers,
            *response.raw_headers,
            (b"x-request-id", request_id.encode("ascii")),
            (b"connection", b"close"),
        ]
        content = [STATUS_LINE[status]]
        for name, value in headers:
            content += [name, b": ", value, b"\r\n"]
        content += [b"\r\n", bytes(response.body)]
        self._refusal = b"".join(content)
        self._head_bytes = _REFUSED  # sends every read to _feed_large, which drops it
        cycle = self.cycle
        # An error inside a body is that request's own answer (its app is waiting for the
        # rest of the body); otherwise the last request before is answered first.
        if not self._in_head or cycle is None or cycle.response_complete:
            self._send_refusal()
        else:
            answered = cycle.on_response

            def answered_then_refuse() -> None:
                answered()
                self._send_refusal()

            cycle.on_response = answered_then_refuse

    def check_head_deadline(self, now: float) -> None:
        """Refuse (408) a connection that has waited for a whole head past the timeout;
        one that is answering a request is not waiting for one."""
        started = self._head_started
        if started is None or now - started < self.header_timeout or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return
        self._head_started = None
        detail = f"No complete request headers within {self.header_timeout:g} s"
        self._refuse(408, detail)

    def _send_refusal(self) -> None:
        if self._refusal is not None and not self.transport.is_closing():
            self.transport.write(self._refusal)
            self.transport.close()


class _HeadHoldingTransport:
    """The transport as one response cycle sees it: the response's head is held back until
    the first write of its body (or the response's end, or a close), then written with
    it. uvicorn writes a head and a body apart: two system calls for every small answer,
    which is a fifth of what a cached download costs. Only a head declaring its body's
    length is held (an interim ``100 Continue``, or the head of a streamed body, goes out
    at once), and its body is written as soon as the app has it (a file's first read)."""

    __slots__ = ("_head", "_is_past_head", "_protocol", "_transport")

    def __init__(self, protocol: HttpProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._head: bytes | None = None
        self._is_past_head = False  # only the cycle's first write but an interim one is held

    def write(self, data: bytes) -> None:
        if self._is_past_head:
            self._transport.write(data)
            return
        head = self._head
        if head is not None:
            self._release()
            self._transport.writelines((head, data))
        elif data.startswith(b"HTTP/1.1 1") or b"\r\ncontent-length:" not in data:
            # 100 Continue, which the client waits for; or a streamed body (chunked, an
            # event stream), whose first part may be long in coming: never held.
            self._transport.write(data)
        else:
            self._head = data
            self._protocol._holding = self

    def flush(self) -> None:
        """Write a head still held."""
        head = self._head
        if head is not None:
            self._release()
            self._transport.write(head)

    def _release(self) -> None:
        self._head = None
        self._is_past_head = True
        if self._protocol._holding is self:
            self._protocol._holding = None

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadDeadlines:
    """One timer per event loop that refuses connections whose head is overdue.

    uvicorn times out idle keep-alive connections, but not a connection that never
    sends a byte, nor one sending its head a byte at a time: each read restarts its
    idle timer. A sweep every second costs the hot path only a clock read per answer.
    """

    _by_loop: ClassVar[dict[int, _HeadDeadlines]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._protocols: set[HttpProtocol] = set()
        self._loop.call_later(_SWEEP_INTERVAL, self._sweep)

    @classmethod
    def watch(cls, protocol: HttpProtocol) -> None:
        deadlines = cls._by_loop.get(id(protocol.loop))
        if deadlines is None:
            deadlines = cls._by_loop[id(protocol.loop)] = cls(protocol.loop)
        deadlines._protocols.add(protocol)

    def _sweep(self) -> None:
        now = self._loop.time()
        for protocol in list(self._protocols):
            if protocol.transport.is_closing():
                self._protocols.discard(protocol)
            else:
                protocol.check_head_deadline(now)
        if self._protocols:
            self._loop.call_later(_SWEEP_INTERVAL, self._sweep)
        else:
            del self._by_loop[id(self._loop)]


def _invalid_detail(exc: httptools.HttpParserError) -> str:
    """The 400 detail for a parser error: llhttp's reason, a fixed text naming the problem."""
    if isinstance(exc.__context__, httptools.HttpParserInvalidURLError):
        return f"{_INVALID}: invalid URL"  # its message holds the URL
    reason = str(exc)
    # Any other callback error is uvicorn's own failure, not a reason to show.
    if isinstance(exc, httptools.HttpParserCallbackError) or not (
        reason.isascii() and reason.isprintable() and 0 < len(reason) <= 100
    ):
        return _INVALID
    return f"{_INVALID}: {reason}"
