"""A TCP proxy in front of a server, which a test makes slow, answer 5xx, or hang.

SeaweedFS cannot be asked to answer slowly or with errors; this proxy, put
between a store client and it, can. Its modes:

- ``pass``: bytes go both ways untouched;
- ``slow``: each chunk the server sends waits `delay` seconds first;
- ``error``: every request (its head and ``Content-Length`` body read) is
  answered ``503 Service Unavailable`` with an S3 error body, and closed;
- ``hang``: connections are accepted and never answered;
- ``close``: connections are closed as soon as they are accepted.

Changing the mode closes every open connection, so a client's pooled
connections meet the new mode on their next request. `connections` counts the
connections accepted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

Mode = Literal["pass", "slow", "error", "hang", "close"]

_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_ERROR = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_ERROR_BODY), _ERROR_BODY)
)
_CHUNK = 65536


class FaultProxy:
    """Listens on a loopback port and forwards to `target` (host, port) as its mode says."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: Mode, *, delay: float = 0.0) -> None:
        """Switch to `mode` (with `delay` seconds a chunk when slow); open connections close."""
        with self._lock:
            self.mode, self.delay = mode, delay
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self.set("pass")
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                mode, delay = self.mode, self.delay
                self._open.add(client)
            if mode == "close":
                self._forget(client)
            elif mode != "hang":  # hung ones are held open, never answered, closed by set()
                handler = self._refuse if mode == "error" else self._forward
                threading.Thread(target=handler, args=(client, delay), daemon=True).start()

    def _refuse(self, client: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            client.settimeout(10)
            _read_request(client)
            client.sendall(_ERROR)
        self._forget(client)

    def _forward(self, client: socket.socket, delay: float) -> None:
        try:
            server = socket.create_connection(self._target, timeout=10)
        except OSError:
            self._forget(client)
            return
        server.settimeout(None)
        with self._lock:
            self._open.add(server)
        threading.Thread(target=_pump, args=(client, server, 0.0), daemon=True).start()
        _pump(server, client, delay)
        self._forget(client, server)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)
        for sock in sockets:
            _close(sock)


def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
    """Copy `source` to `sink` until either closes, waiting `delay` before each chunk."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(_CHUNK):
            if delay:
                time.sleep(delay)
            sink.sendall(chunk)
    _close(sink)
    _close(source)


def _read_request(client: socket.socket) -> None:
    """Read one HTTP request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(_CHUNK)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(body) < length:
        chunk = client.recv(_CHUNK)
        if not chunk:
            return
        body += chunk


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
