"""Logs: request ids on every answer and line, and never a secret in any line.

Regression (review finding 3): a 500 carried no ``X-Request-Id`` and its log
line had ``"rid": null``; the error line held ``repr`` of the exception,
which for ``POST /token`` was the whole rendered answer with a valid JWT,
replayed from the log to download an internal file.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator

import pytest
from starlette.requests import Request

from gateway.auth import Caller
from gateway.logs import RequestLog
from indexer.logs import configure_logging, make_handler
from indexer.redaction import redact
from tests.gateway.conftest import Gateway
from tests.gateway.test_download import UNKNOWN, assert_problem

DIGEST = "ab" * 64
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkZXIiLCJzY29wZXMiOlsiKiJdfQ.c2lnbmF0dXJlLWJ5dGVz"


class LeakingAuthenticator:
    """Fails the way rendering a token answer with a lone surrogate once did."""

    async def authenticate(self, request: Request) -> Caller:
        rendered = json.dumps({"token": JWT, "scopes": ["\udfff"]}, ensure_ascii=False)
        rendered.encode("utf-8")  # raises UnicodeEncodeError holding the whole text
        raise AssertionError("unreachable")


@pytest.fixture(params=["mozlog", "text"])
def log_lines(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every record, formatted as production formats it, into a buffer."""
    buffer = io.StringIO()
    handler = make_handler(buffer, log_format=request.param)
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(saved)


def test_a_500_carries_its_request_id_and_logs_with_it(
    gateway: Gateway, log_lines: io.StringIO
) -> None:
    client = gateway.client(authenticator=LeakingAuthenticator())
    response = client.get(f"/sha512/{UNKNOWN}", headers={"X-Request-Id": "rid-500"})
    assert_problem(response, 500)
    assert response.headers["x-request-id"] == "rid-500"
    written = log_lines.getvalue()
    assert "UnicodeEncodeError" in written
    lines = written.splitlines()
    error = [line for line in lines if "unexpected error answering" in line]
    summary = [line for line in lines if "request.summary" in line]
    assert error
    assert summary
    assert all("rid-500" in line for line in error + summary), error + summary


def test_an_exception_holding_a_token_never_reaches_the_log(
    gateway: Gateway, log_lines: io.StringIO
) -> None:
    client = gateway.client(authenticator=LeakingAuthenticator())
    assert_problem(client.get(f"/sha512/{UNKNOWN}"), 500)
    written = log_lines.getvalue()
    assert "Traceback" in written or "traceback" in written  # the frames are kept
    assert JWT not in written
    assert JWT.split(".")[2] not in written


def test_generated_request_ids_are_on_500s_too(gateway: Gateway) -> None:
    response = gateway.client(authenticator=LeakingAuthenticator()).get(f"/sha512/{UNKNOWN}")
    assert len(response.headers["x-request-id"]) == 32


def test_text_format_summary_lines_say_what_happened(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(log_format="text", stream=sys.stdout)
        gateway.client().get(f"/sha512/{UNKNOWN}", headers={"X-Request-Id": "text-1"})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    [summary] = [line for line in capsys.readouterr().out.splitlines() if "request.summary" in line]
    assert "method=GET" in summary
    assert "code=404" in summary
    assert "rid=text-1" in summary
    assert f"path=/sha512/{UNKNOWN}" in summary


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"answer {{'token': '{JWT}'}}", JWT),
        ("Authorization: Bearer abcdefgh.ijklmnop", "abcdefgh.ijklmnop"),
        ('Hawk id="c", ts="1", nonce="n0nce", mac="bWFjLXZhbHVl", hash="aGFzaA=="', "bWFjLXZhbHVl"),
        ("GET /__store__/local/k?expires=1&signature=deadbeef0011", "deadbeef0011"),
        ("https://s3/b/k?X-Amz-Signature=0a1b2c3d4e&X-Amz-Date=1", "0a1b2c3d4e"),
        ("Authorization: Basic cmVhZGVyOnNlY3JldA==", "cmVhZGVyOnNlY3JldA=="),
        ('{"clientId": "x", "accessToken": "sekrit-value"}', "sekrit-value"),
        ("AWS4-HMAC-SHA256 Credential=AK/1/us/s3/aws4_request, Signature=f00f", "f00f"),
        ("answer {'clientId': 'x', 'accessToken': 'py-repr-secret'}", "py-repr-secret"),
        ("talking to http://user:url-password@127.0.0.1:9/b", "url-password"),
    ],
)
def test_redaction(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_redaction_keeps_ordinary_text() -> None:
    for text in (
        "Basic credentials are accepted by POST /token only",
        "indexer pass indexed=3 failed=0",
        f"GET /sha512/{UNKNOWN} 404",
    ):
        assert redact(text) == text


def test_libraries_that_log_credentials_stay_quiet() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(level=logging.DEBUG, log_format="text", stream=io.StringIO())
        assert not logging.getLogger("botocore").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("urllib3").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("gateway").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_text_lines_cannot_be_forged_from_a_request(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    forged = "x%0a2026-11-29%2021:00:00,000%20CRITICAL%20gateway.auth:%20forged%1b[31m%0d"
    try:
        configure_logging(log_format="text", stream=sys.stdout)
        gateway.client(authenticator=LeakingAuthenticator()).get(f"/sha512/{forged}")
        gateway.client().get(f"/sha512/{forged}")
        gateway.client().get("/sha512/x%20code=200%20rid=forged")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    out = capsys.readouterr().out
    assert 'path="/sha512/x code=200 rid=forged"' in out
    assert not any(line.startswith("2026-11-29 21:00:00") for line in out.splitlines())
    assert "\x1b" not in out
    assert "\r" not in out
    # A traceback's lines are marked as the record's continuation.
    lines = out.splitlines()
    assert all(line[:4].isdigit() or line.startswith("  | ") for line in lines), lines


@pytest.mark.parametrize(
    "path",
    [
        "/sha512/" + "a" * 128,
        '/file?q="quoted"\\back',
        "/caf\u00e9/\u2028/\x07",
        "/x?token=" + JWT,
        '/x/"accessToken":"SECRET-value',
        '/x mac="unterminated-mac',
        "/x/http://user:pw\t@host/",
        "/x'token':",
        "/" + "long-" * 1000 + JWT,
    ],
)
@pytest.mark.parametrize("counts", [None, {"files": 3, "resolved": 1, "refused": 2}])
def test_the_direct_summary_line_is_the_formatters_line(
    path: str, counts: dict[str, int] | None
) -> None:
    """Production's summary lines skip the formatter; they must be what it would write."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    try:
        configure_logging(log_format="mozlog", stream=buffer)
        handler = root.handlers[0]
        log = RequestLog()
        rid = log.request_id(JWT)  # a caller's id that needs redacting
        # A client id is the identity provider's text: escaped and redacted like a path.
        client = path.replace("/", "client-", 1)
        log.summary(
            "GET", path, 302, time.perf_counter(), rid,
            route="/sha512/{digest}", digest=DIGEST, client=client, counts=counts,
        )  # fmt: skip
        direct = json.loads(buffer.getvalue())
        record = logging.makeLogRecord(
            {"name": "request.summary", "levelno": logging.INFO, "levelname": "INFO", "msg": ""}
        )
        fields = {"method": "GET", "path": path, "code": 302, "t": direct["Fields"]["t"]}
        record.__dict__.update(fields, rid=JWT)
        record.__dict__.update(route="/sha512/{digest}", digest=DIGEST, client=client)
        record.__dict__.update(counts or {}, decision="redirect")
        assert handler.formatter is not None
        formatted = handler.formatter.format(record)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    expected = json.loads(formatted)
    expected["Timestamp"] = direct["Timestamp"]
    expected["Pid"] = direct["Pid"]
    assert direct == expected
    assert buffer.getvalue().count("\n") == 1
    assert JWT not in buffer.getvalue()
    assert "SECRET" not in buffer.getvalue()
    line = buffer.getvalue().rstrip("\n")
    assert line == formatted.replace(
        str(json.loads(formatted)["Timestamp"]), str(direct["Timestamp"])
    ).replace(f'"Pid": {json.loads(formatted)["Pid"]}', f'"Pid": {direct["Pid"]}')


class BrokenStream(io.StringIO):
    """A log stream whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("the log reader is gone")

    def flush(self) -> None:
        raise BrokenPipeError("the log reader is gone")


def test_a_failing_log_stream_never_cuts_an_answer(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = gateway.add(b"x" * 100)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(log_format="mozlog", stream=BrokenStream())
        client = gateway.client()
        answers = [client.get(f"/sha512/{digest}") for _ in range(3)]  # the app, then fast
        answers.append(client.get("/sha512/bad"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert [answer.status_code for answer in answers] == [302, 302, 302, 400]
    for answer in answers:
        assert len(answer.content) == int(answer.headers["content-length"]) > 0
    capsys.readouterr()  # logging's own report of the failed writes, on stderr
