"""The client's HTTP edge: what its errors show of a URL that a server handed over."""

from __future__ import annotations

import json
import socket

import pytest

from tooltool_client.api import problem
from tooltool_client.errors import TransportError
from tooltool_client.transport import Transport


def _refusing_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "path",
    [
        "/\x1b]0;title\x07\x1b[2J",  # a terminal escape in a signed URL from the resolve answer
        "/blob\u202etxt.exe",
    ],
)
def test_a_urls_control_characters_are_escaped_in_errors(path: str) -> None:
    url = f"http://user:PASSWORD@127.0.0.1:{_refusing_port()}{path}?sig=SECRET#frag"
    transport = Transport()
    with pytest.raises(TransportError) as raised, transport.open("GET", url):
        pass
    message = str(raised.value)
    assert message.isprintable()
    assert "SECRET" not in message
    assert "PASSWORD" not in message
    assert "frag" not in message
    assert f"127.0.0.1:{url.split(':')[3].split('/')[0]}" in message


def test_an_unparsable_url_shows_no_query() -> None:
    with (
        pytest.raises(TransportError) as raised,
        Transport().open("GET", "http://[::1/x?sig=SECRET"),
    ):
        pass
    assert "SECRET" not in str(raised.value)


def test_a_refused_connection_says_so_without_urllib3s_object() -> None:
    url = f"http://127.0.0.1:{_refusing_port()}/x"
    with pytest.raises(TransportError) as raised, Transport().open("GET", url):
        pass
    assert (
        str(raised.value) == f"GET {url}: Failed to establish a new connection:"
        " [Errno 111] Connection refused"
    )


def test_a_servers_problem_detail_is_escaped_and_bounded() -> None:
    body = json.dumps({"detail": "no\x1b[2J\x1b]0;owned\x07" + "x" * 1000}).encode()
    refused = problem(403, body)
    assert refused.status == 403
    assert refused.detail.startswith("no\\x1b[2J\\x1b]0;owned\\x07xxx")
    assert refused.detail.endswith("... (716 more characters)")
    assert str(refused) == f"403: {refused.detail}"
    assert all(char.isprintable() for char in str(refused))
