"""No log line of the whole test run holds a token, signature, Hawk MAC or Authorization header.

Run last (see ``pytest_collection_modifyitems`` in tests/conftest.py), over
every record every test logged, at every level, in both production formats.
"""

from __future__ import annotations

import pytest

from tests.conftest import SECRET_KEY, SIGNING_KEY
from tests.gateway.auth_helpers import CLIENTS
from tests.log_scan import LogRecorder, leaks


def test_no_secret_in_any_log_line(log_recorder: LogRecorder) -> None:
    lines = log_recorder.lines()
    if len(lines) < 50:
        pytest.skip("too few tests ran to scan their logs")
    known = [client["accessToken"] for client in CLIENTS.values()]
    known += [SECRET_KEY, SIGNING_KEY.decode(), "s" * 32]
    found = leaks(lines, known)
    assert not found, "\n".join(found[:20])


def test_the_scan_finds_what_it_looks_for() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkZXIifQ.c2lnbmF0dXJlLWJ5dGVz"
    assert leaks([f"token {jwt}"], [])
    assert leaks(['Hawk id="a", ts="1", nonce="b", mac="bWFj"'], [])
    assert leaks(["/__store__/local/k?expires=1&signature=00ff00ff"], [])
    assert leaks(["Authorization: Bearer abc.def.ghi0123"], [])
    assert leaks(["x the-secret y"], ["the-secret"])
    assert not leaks(["Basic credentials are accepted by POST /token only"], [])
    assert not leaks(['mac="[redacted]" signature=[redacted] Bearer [redacted]'], [])
