"""HTTP for the client: one pool of keep-alive connections per host, shared by the
worker threads, with every urllib3 error translated at this edge."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import weakref
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from tooltool_client.errors import TransportError, shown

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
USER_AGENT = "tooltool-client/1"
_CONNECTION_REPR = re.compile(r"Tracked\(host=[^)]*\): ")


class Transport:
    """Requests without redirects followed (the caller decides where credentials go)."""

    def __init__(self, *, connections: int = 8, read_timeout: float = READ_TIMEOUT) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=16,
            maxsize=connections,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout),
        )
        # Every connection this transport opens, so that interrupt() can end them.
        self._connections = _Opened()
        self._pool.pool_classes_by_scheme = {
            "http": _tracking(HTTPConnectionPool, HTTPConnection, self._connections),
            "https": _tracking(HTTPSConnectionPool, HTTPSConnection, self._connections),
        }

    @contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
    ) -> Iterator[urllib3.BaseHTTPResponse]:
        """The response, its body not yet read; released (or closed) on exit. A file
        `body` is streamed (give its ``Content-Length``, or it goes chunked)."""
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        try:
            response = self._pool.request(
                method,
                url,
                headers=all_headers,
                body=body,
                redirect=False,
                preload_content=False,
            )
        except (Urllib3Error, OSError, ValueError) as exc:
            raise TransportError(f"{method} {_shown(url)}: {_reason(exc)}") from None
        try:
            yield response
        except (Urllib3Error, OSError) as exc:
            response.close()
            raise TransportError(f"{method} {_shown(url)}: {_reason(exc)}") from None
        except BaseException:
            response.close()  # half-read: never back into the pool
            raise
        else:
            response.release_conn()

    def interrupt(self) -> None:
        """End every connection, from any thread: a request waiting on a silent server
        fails at once (an interrupted fetch stops now, not after the read timeout)."""
        for connection in self._connections.snapshot():
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # closed meanwhile
                    sock.shutdown(socket.SHUT_RDWR)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        limit: int = 4 * 1024 * 1024,
        unread: Container[int] = (),
    ) -> tuple[int, Mapping[str, str], bytes]:
        """A whole small answer: status, headers and at most `limit` bytes of body; for a
        status in `unread`, no body (its connection is closed instead of read to the end)."""
        with self.open(method, url, headers=headers, body=body) as response:
            if response.status in unread:
                response.close()
                return response.status, response.headers, b""
            data = response.read(limit + 1)
            if len(data) > limit:
                raise TransportError(f"{method} {_shown(url)}: the answer is over {limit} bytes")
            return response.status, response.headers, data

    def close(self) -> None:
        self._pool.clear()


class _Opened:
    """The connections a transport opened, weakly held; added to from any thread."""

    def __init__(self) -> None:
        self._connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.add(connection)

    def snapshot(self) -> list[HTTPConnection]:
        with self._lock:
            return list(self._connections)


def _tracking(
    pool: type[HTTPConnectionPool], connection: type[HTTPConnection], into: _Opened
) -> type[HTTPConnectionPool]:
    """`pool` whose connections add themselves to `into` when they connect."""

    class Tracked(connection):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            into.add(self)

    return type(pool.__name__, (pool,), {"ConnectionCls": Tracked})


def _shown(url: str) -> str:
    """A URL without its query and user information (signed URLs carry credentials
    there), printable: a server's URL may hold escape sequences meant for a terminal."""
    scheme, separator, rest = url.split("?", 1)[0].split("#", 1)[0].partition("://")
    authority, slash, path = rest.partition("/")
    return shown(scheme + separator + authority.rpartition("@")[2] + slash + path)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    # urllib3 puts the connection object's repr in its messages (`Tracked(host=…, port=…): `,
    # a name that means nothing to a reader), and may quote the URL it could not parse,
    # query included.
    text = _CONNECTION_REPR.sub("", text.split(">: ", 1)[-1])
    return shown(text.split("?", 1)[0])
