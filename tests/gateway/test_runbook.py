"""``tooltool-gateway check``: the runbook's checks pass against a working gateway and
fail, one clear line each and a non-zero exit, against broken deployments."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.cli import main
from gateway.errors import problem_response
from gateway.lookup import INVALID_DIGEST
from gateway.settings import AuthSettings
from tests.conftest import free_port
from tests.gateway.auth_helpers import CLIENTS, basic, clients_file_entries
from tests.gateway.conftest import Gateway

DATA = b"the bytes of a public file"
PUBLIC = hashlib.sha512(DATA).hexdigest()
INTERNAL = hashlib.sha512(b"an internal file").hexdigest()


def check(url: str, *options: str, public: str = PUBLIC, internal: str = INTERNAL) -> int:
    return main(["check", url, "--public", public, "--internal", internal, *options])


def token_file(url: str, path: Path) -> Path:
    """A token from ``POST /token`` in a file, as tooltool.py takes one."""
    request = urllib.request.Request(
        f"{url}/token", method="POST", headers={"Authorization": basic("reader")}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        path.write_text(json.loads(answer.read())["token"] + "\n")
    return path


@pytest.mark.parametrize("credentials", ["hawk", "bearer"])
def test_a_working_gateway_passes_every_check(
    make_gateway: Callable[..., Gateway],
    live_server: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    credentials: str,
) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps(clients_file_entries()))
    gateway = make_gateway(auth=AuthSettings(clients_file=clients, jwt_secret="s" * 32))
    public = gateway.add(DATA, "public")
    internal = gateway.add(b"an internal file", "internal", name="internal.bin")
    # Its local store's signed URLs are root-relative: resolved against the request's.
    url = live_server(gateway.app(), free_port()).url
    if credentials == "hawk":
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"clientId": "reader", **CLIENTS["reader"]}))
    else:
        auth = token_file(url, tmp_path / "token")
    assert check(url + "/", "--authentication-file", str(auth)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"PASS public: 302 to {url}, which served its {len(DATA)} bytes",
        "PASS internal: 403 with the runbook's body",
        "PASS invalid: 400 with the runbook's body",
        f"PASS internal with credentials: 302 to {url}, which served its 16 bytes",
    ]
    assert err == ""
    assert (public, internal) == (PUBLIC, INTERNAL)
    assert CLIENTS["reader"]["accessToken"] not in out


def deployment(**broken: Response) -> Starlette:
    """A deployment answering the runbook's checks as the seed says, but for `broken`."""
    answers: dict[str, Response] = {
        PUBLIC: RedirectResponse("/blob?signature=secret", 302),
        INTERNAL: problem_response(403),
        "invalid": problem_response(400, INVALID_DIGEST),
        "blob": Response(DATA),
        **broken,
    }

    async def answer(request: Request) -> Response:
        return answers[request.path_params["name"]]

    return Starlette(routes=[Route("/sha512/{name}", answer), Route("/{name}", answer)])


# The seed's 403, as the legacy service answered it (no `error` member).
FORBIDDEN = (
    "You don't have the permission to access the requested resource. It is either"
    " read-protected or not readable by the server."
)
LEGACY_403 = {
    "detail": FORBIDDEN,
    "instance": "about:blank",
    "status": 403,
    "title": f"403 Forbidden: {FORBIDDEN}",
    "type": "about:blank",
}


@pytest.mark.parametrize(
    ("broken", "line"),
    [
        ({}, None),
        ({"invalid": JSONResponse(LEGACY_403, 403)}, "FAIL invalid: 403, not 400 (You don't"),
        ({INTERNAL: JSONResponse(LEGACY_403, 403)}, None),  # the seed's body, member for member
        ({"blob": Response(b"other bytes")}, "FAIL public: 302 to {url}, which served 11 bytes"),
        ({"blob": Response(DATA, 403)}, "FAIL public: 302 to {url}, which answered 403"),
        ({PUBLIC: Response("", 302)}, "FAIL public: 302 without a Location"),
        ({PUBLIC: problem_response(404)}, "FAIL public: 404, not 302 (The requested URL"),
        (
            {PUBLIC: Response("", 302, {"Location": "http://127.0.0.1:{port}/blob"})},
            "FAIL public: 302, but http://127.0.0.1:{port} did not answer: Connection refused",
        ),
        ({INTERNAL: RedirectResponse("/blob", 302)}, "FAIL internal: 302: served to anonymous"),
        ({INTERNAL: Response("no", 403)}, "FAIL internal: 403, but its body is not JSON"),
        (
            {INTERNAL: JSONResponse({**LEGACY_403, "detail": "Forbidden"}, 403)},
            'FAIL internal: 403, but its detail is "Forbidden", not "You don\'t have',
        ),
        ({"invalid": problem_response(404)}, "FAIL invalid: 404, not 400 (The requested URL"),
        (
            {"invalid": problem_response(400, "Bad digest")},
            "FAIL invalid: 400, but its detail is \"Bad digest\", not 'Invalid sha512 digest'",
        ),
        (  # the text of such an error quotes the URL, signature and all
            {PUBLIC: Response("", 302, {"Location": "/blob x?signature=secret"})},
            "FAIL public: 302, but {url} did not answer: a malformed URL",
        ),
    ],
)
def test_a_broken_deployment_fails_its_check(
    live_server: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    broken: dict[str, Response],
    line: str | None,
) -> None:
    port, refused = free_port(), free_port()
    for response in broken.values():  # addresses known only now
        if "location" in response.headers:
            response.headers["location"] = response.headers["location"].format(port=refused)
    url = live_server(deployment(**broken), port).url
    status = check(url)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert err == ""
    if line is None:
        assert status == 0, out
        assert all(line.startswith("PASS ") for line in lines)
        return
    assert status == 1
    expected = line.format(url=url, port=refused)
    assert [line for line in lines if line.startswith("FAIL ")] == [
        next(line for line in lines if line.startswith(expected))
    ], out
    assert "secret" not in out  # a signed URL's query is never shown


def test_an_unreachable_deployment_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert check(url) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"Unreachable: {url}/ did not answer: Connection refused\n"


def test_an_answer_trickling_in_is_cut_at_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A socket timeout bounds each wait for data; the whole request is bounded too."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        stop = threading.Event()

        def trickle() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 302 Found\r\n")
                while not stop.wait(0.2):
                    connection.sendall(b"X: y\r\n")

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        try:
            assert check(url, "--timeout", "1") == 3
        finally:
            stop.set()
        assert time.monotonic() - started < 30  # not a timing claim: it did not hang
    assert capsys.readouterr().err == f"Unreachable: {url}/ did not answer in full within 1 s\n"


def test_credentials_in_the_url_are_refused_unshown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(
            ["check", "http://ops:hunter2@127.0.0.1:1/", "--public", PUBLIC, "--internal", INTERNAL]
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "use --authentication-file (http://127.0.0.1:1)" in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (["http://x", "--public", "abc", "--internal", INTERNAL], 2, "not a sha512 digest"),
        (["ftp://x/", "--public", PUBLIC, "--internal", INTERNAL], 2, "not an http(s) base URL"),
        (["http://x:y/", "--public", PUBLIC, "--internal", INTERNAL], 2, "not an http(s)"),
        (["http://x", "--public", PUBLIC], 2, "--internal"),
        (["http://x", "--public", PUBLIC, "--internal", INTERNAL, "--timeout", "0"], 2, "seconds"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], options: list[str], status: int, message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["check", *options])
    assert stopped.value.code == status
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("text", [None, "", "line one\x00\n"])
def test_an_unusable_authentication_file_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None
) -> None:
    auth = tmp_path / "auth"
    if text is not None:
        auth.write_text(text)
    assert check("http://127.0.0.1:1", "--authentication-file", str(auth)) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"AuthenticationFile: cannot use {auth}: ")
    assert err.count("\n") == 1
