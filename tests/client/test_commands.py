"""``tooltool add``, ``upload``, ``change-visibility``, ``delete`` and ``token``: the
command line run in process against a live gateway on each store, and the console
script in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.client.conftest import (
    CliRun,
    GatewayStarter,
    LiveGateway,
    cli,
    cli_args,
)
from tests.conftest import LiveServer, free_port
from tests.fault_proxy import FaultProxy
from tests.gateway.auth_helpers import CLIENTS, PREFIX, hawk
from tests.test_end_to_end import request

_JWT = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def write(name: str, size: int = 3000) -> bytes:
    data = os.urandom(size)
    Path(name).write_bytes(data)
    return data


def manifest(path: str = "manifest.tt") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(Path(path).read_text())
    return records


def digest_of(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def assert_no_secret(run: CliRun, *tokens: str) -> None:
    """No access token of any client, nor any of `tokens`, on stderr; none on stdout
    but the tokens a ``token`` command prints."""
    for client in CLIENTS.values():
        assert client["accessToken"] not in run.stdout + run.stderr
    for token in tokens:
        assert token not in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture
def closed_url() -> str:
    """A server URL nobody listens at: a command that sends a request fails there."""
    return f"http://127.0.0.1:{free_port()}/"


# add


def test_add_creates_the_manifest(workdir: Path) -> None:
    data = write("clang.tar.xz")
    run = cli(
        "add", "--visibility", "internal", "--version", "17.0", "--unpack", "clang.tar.xz",
        "-m", "tools.tt",
    )  # fmt: skip
    assert (run.code, run.lines) == (0, ["INFO - clang.tar.xz: added to the manifest"])
    assert manifest("tools.tt") == [
        {
            "filename": "clang.tar.xz",
            "size": len(data),
            "algorithm": "sha512",
            "digest": digest_of(data),
            "unpack": True,
            "version": "17.0",
            "visibility": "internal",
        }
    ]
    assert Path("tools.tt").read_text().startswith('[\n  {\n    "filename": "clang.tar.xz",')
    assert not Path("manifest.tt").exists()


def test_add_never_writes_through_a_symlink_at_the_temporary_name(workdir: Path) -> None:
    """The manifest is written to a predictable temporary name beside it, then renamed: a
    symlink planted there (a folder others can write) must not receive it."""
    write("tool.bin")
    victim = workdir.parent / "victim"
    victim.write_text("precious")
    Path(f".manifest.tt.{os.getpid()}.tmp").symlink_to(victim)
    run = cli("add", "tool.bin")
    assert run.code == 0, run.stderr
    assert victim.read_text() == "precious"
    assert [record["filename"] for record in manifest()] == ["tool.bin"]
    assert not Path("manifest.tt").is_symlink()


def test_add_puts_new_records_first_and_keeps_the_others(workdir: Path) -> None:
    old = {
        "filename": "old.bin",
        "size": 1,
        "algorithm": "sha512",
        "digest": "0" * 128,
        "setup": "setup.sh",
        "x-note": {"kept": True},
    }
    Path("manifest.tt").write_text(json.dumps([old]))
    Path("sub").mkdir()
    one, two = write("sub/one.bin"), write("two.bin")
    run = cli("add", "sub/one.bin", "two.bin")
    assert run.code == 0, run.stderr
    records = manifest()
    assert [record["filename"] for record in records] == ["one.bin", "two.bin", "old.bin"]
    assert records[0] == {
        "filename": "one.bin",
        "size": len(one),
        "algorithm": "sha512",
        "digest": digest_of(one),
    }
    assert records[1]["digest"] == digest_of(two)
    assert records[2] == old


def test_adding_the_same_file_again_adds_nothing(workdir: Path) -> None:
    write("a.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    before = Path("manifest.tt").read_text()
    run = cli("add", "--visibility", "public", "a.bin")
    assert (run.code, run.lines) == (1, ["INFO - a.bin: file already in manifest"])
    assert Path("manifest.tt").read_text() == before


@pytest.mark.parametrize("change", ["content", "visibility"])
def test_another_file_under_a_listed_name_is_refused(workdir: Path, change: str) -> None:
    write("a.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    before = Path("manifest.tt").read_text()
    if change == "content":
        write("a.bin")
    write("b.bin")
    visibility = "internal" if change == "visibility" else "public"
    run = cli("add", "--visibility", visibility, "a.bin", "b.bin")
    assert run.code == 1
    assert run.lines == [
        "ERROR - manifest already contains a different file named a.bin",
        "INFO - b.bin: added to the manifest",
    ]
    assert manifest()[1:] == json.loads(before)
    assert manifest()[0]["filename"] == "b.bin"


def test_a_file_given_with_its_folder_replaces_the_listed_one(workdir: Path) -> None:
    write("a.bin")
    listed = write("b.bin")
    assert cli("add", "--visibility", "public", "a.bin", "b.bin").code == 0
    Path("build").mkdir()
    rebuilt = write("build/a.bin", 500)
    run = cli("add", "--visibility", "public", "build/a.bin")
    assert (run.code, run.lines) == (
        0,
        [
            "INFO - a.bin: replaces the file listed under that name",
            "INFO - a.bin: added to the manifest",
        ],
    )
    assert [(r["filename"], r["digest"]) for r in manifest()] == [
        ("a.bin", digest_of(rebuilt)),
        ("b.bin", digest_of(listed)),
    ]
    run = cli("add", "--visibility", "public", "./build/a.bin")  # the very same record
    assert (run.code, run.lines) == (1, ["INFO - a.bin: file already in manifest"])


def test_a_missing_file_fails_and_the_others_are_added(workdir: Path) -> None:
    write("present.bin")
    Path("folder").mkdir()
    run = cli("add", "missing.bin", "present.bin", "folder")
    assert run.code == 1
    assert run.lines == [
        "ERROR - 'missing.bin' cannot be read: No such file or directory",
        "INFO - present.bin: added to the manifest",
        "ERROR - 'folder' is a folder, not a file",
    ]
    assert [record["filename"] for record in manifest()] == ["present.bin"]


def test_add_needs_files_and_a_readable_manifest(workdir: Path) -> None:
    run = cli("add")
    assert (run.code, run.lines) == (1, ["ERROR - add command requires at least one file"])
    assert not Path("manifest.tt").exists()
    Path("manifest.tt").write_text("{not json")
    write("a.bin")
    run = cli("add", "a.bin")
    assert run.code == 1
    assert run.lines == [
        "ERROR - failed to load manifest file at 'manifest.tt':"
        " trying to read invalid manifest file"
    ]
    assert Path("manifest.tt").read_text() == "{not json"


# upload: what is checked before any request


def test_upload_needs_a_message(workdir: Path, closed_url: str) -> None:
    write("a.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    for message in ([], ["--message", ""]):
        run = cli("--url", closed_url, "upload", *message)
        assert (run.code, run.lines) == (1, ["ERROR - upload command requires a message"])


@pytest.mark.parametrize(
    ("damage", "lines"),
    [
        ("remove", ["ERROR - a.bin is absent", "ERROR - manifest is invalid"]),
        ("rewrite", ["ERROR - a.bin is present and invalid", "ERROR - manifest is invalid"]),
        (
            "no visibility",
            [
                "ERROR - All files in a manifest for upload must have a visibility set"
                " (none on: b.bin)"
            ],
        ),
        ("no manifest", ["ERROR - manifest file 'manifest.tt' does not exist"]),
        ("empty manifest", ["ERROR - the manifest lists no files to upload"]),
    ],
)
def test_upload_refuses_a_manifest_it_cannot_send(
    workdir: Path, closed_url: str, damage: str, lines: list[str]
) -> None:
    write("a.bin")
    write("b.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    visibility = ["--visibility", "public"] if damage != "no visibility" else []
    assert cli("add", *visibility, "b.bin").code == 0
    if damage == "remove":
        Path("a.bin").unlink()
    elif damage == "rewrite":
        write("a.bin")
    elif damage == "no manifest":
        Path("manifest.tt").unlink()
    elif damage == "empty manifest":
        Path("manifest.tt").write_text("[]")
    run = cli("--url", closed_url, "upload", "--message", "tools")
    assert (run.code, run.lines) == (1, lines)


# upload against the gateway


def test_upload_end_to_end(live_gateway: LiveGateway, workdir: Path, closed_url: str) -> None:
    public, internal = write("public.tar.gz", 70_000), write("internal.bin", 1000)
    assert cli("add", "--visibility", "public", "public.tar.gz").code == 0
    assert cli("add", "--visibility", "internal", "internal.bin").code == 0
    # The legacy forms: --url repeated (an upload goes to the first), options after the command.
    argv = ["--url", live_gateway.url, "--url", closed_url, "upload", "-m", "manifest.tt"]
    argv += ["--authentication-file", live_gateway.auth("uploader"), "--message", "Bug 1 - tools"]
    argv += ["--region", "local" if live_gateway.store == "local" else "us-east-1"]
    run = cli(*argv)
    assert run.code == 0, run.stderr
    assert sorted(run.lines) == [
        "INFO - internal.bin: uploaded",
        "INFO - public.tar.gz: uploaded",
        "INFO - uploading 2 file(s), 69.3 KiB",
    ]
    assert_no_secret(run)
    assert live_gateway.download(digest_of(public)) == public
    assert live_gateway.download(digest_of(internal)) == internal
    search = f"{live_gateway.url}upload?q=bug%201"
    status, _, body = request(search, headers={"Authorization": hawk("reader", search)})
    assert status == 200
    [batch] = json.loads(body)["result"]
    assert (batch["author"], batch["message"]) == ("uploader", "Bug 1 - tools")
    assert sorted(batch["files"]) == ["internal.bin", "public.tar.gz"]
    again = cli(*argv)
    assert again.code == 0, again.stderr
    assert sorted(again.lines)[:2] == [
        "INFO - internal.bin: already on the server",
        "INFO - public.tar.gz: already on the server",
    ]


@pytest.mark.parametrize(
    ("client_id", "line"),
    [
        (
            "public-uploader",
            "ERROR - the server refused the upload: 403: no permission to upload internal files",
        ),
        (
            "reader",
            "ERROR - the server refused the upload: 403: no permission to upload internal files",
        ),
        (None, "ERROR - the server refused the upload: 401: "),
    ],
    ids=["public-uploader", "reader", "anonymous"],
)
def test_an_upload_without_the_scope_is_refused(
    live_gateway: LiveGateway, workdir: Path, client_id: str | None, line: str
) -> None:
    write("internal.bin")
    assert cli("add", "--visibility", "internal", "internal.bin").code == 0
    run = cli(*cli_args(live_gateway, client_id, "upload", "--message", "tools"))
    assert run.code == 1
    assert len(run.lines) == 2, run.stderr
    assert run.lines[1].startswith(line)
    assert_no_secret(run)


@pytest.mark.parametrize("mode", ["error", "close"])
def test_a_refused_put_is_reported_per_file(
    start_live_gateway: GatewayStarter, workdir: Path, mode: Any
) -> None:
    """The local store's signed URLs point at a proxy that refuses them: the new file
    fails, the file the server holds is reported as such; the next upload sends it."""
    port = free_port()
    with FaultProxy(("127.0.0.1", port)) as proxy:
        gateway = start_live_gateway("local", port=port, TOOLTOOL_PUBLIC_URL=proxy.url)
        held = write("held.bin")
        gateway.import_file(Path("held.bin"), "public")
        new = write("new.bin", 200_000)
        assert cli("add", "--visibility", "public", "held.bin", "new.bin").code == 0
        proxy.set(mode)
        run = cli(*cli_args(gateway, "uploader", "upload", "--message", "tools"))
        assert run.code == 1
        reason = {
            "error": "the store answered 503 (ServiceUnavailable)",
            "close": f"PUT {proxy.url}/__store__/local/staging/",
        }[mode]
        assert run.lines[0] == "INFO - uploading 2 file(s), 198.2 KiB"
        assert len(run.lines) == 4, run.stderr
        failed = next(line for line in run.lines if line.startswith("ERROR - new.bin: failed ("))
        assert failed.startswith(f"ERROR - new.bin: failed ({reason}")
        assert "?" not in failed  # never the signed URL's query
        assert "INFO - held.bin: already on the server" in run.lines[1:3]
        assert run.lines[3:] == ["ERROR - The following files failed to upload: 'new.bin'"]
        proxy.set("pass")
        run = cli(*cli_args(gateway, "uploader", "upload", "--message", "tools"))
        assert run.code == 0, run.stderr
        assert "INFO - new.bin: uploaded" in run.lines
        assert gateway.download(digest_of(new)) == new
        assert gateway.download(digest_of(held)) == held


def test_urls_that_expired_before_their_turn_are_renewed(
    start_live_gateway: GatewayStarter, workdir: Path
) -> None:
    """URLs live 3 s (2 at least: the local store counts whole seconds); the store's
    answer to the first PUT comes 3.5 s late and --jobs 1 sends one file at a time, so
    the second file's URL has expired when its turn comes: it is refused (403), asked
    for again, and sent."""
    port = free_port()
    with FaultProxy(("127.0.0.1", port)) as proxy:
        gateway = start_live_gateway(
            "local", port=port, TOOLTOOL_PUBLIC_URL=proxy.url, UPLOAD_EXPIRES_IN="3"
        )
        write("one.bin")
        two = write("two.bin")
        assert cli("add", "--visibility", "public", "one.bin", "two.bin").code == 0
        proxy.set("slow", delay=3.5)
        run = cli(*cli_args(gateway, "uploader", "upload", "--message", "m", "--jobs", "1"))
        assert run.code == 0, run.stderr
        assert run.lines == [
            "INFO - uploading 2 file(s), 5.9 KiB",
            "INFO - one.bin: uploaded",
            "INFO - two.bin: the store answered 403: Request signature refused: the URL has"
            " expired; asking for a new URL",
            "INFO - uploading 1 file(s), 2.9 KiB",
            "INFO - two.bin: uploaded",
        ]
        proxy.set("pass")
        assert gateway.download(digest_of(two)) == two


class LegacyCompletion:
    """The legacy service's completion answers: 409 with ``X-Retry-After`` `times` times
    (None: for ever), then 202; uploads PUT to the double itself."""

    def __init__(self, times: int | None) -> None:
        self.times = times
        self.completions = 0
        self.puts: list[tuple[str | None, str | None, bytes]] = []
        self.batches: list[tuple[str | None, str | None, Any]] = []
        self.url = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/upload", self.batch, methods=["POST"]),
                Route("/put/{name}", self.put, methods=["PUT"]),
                Route("/upload/complete/sha512/{digest}", self.complete),
            ]
        )

    async def batch(self, request: Request) -> Response:
        batch = await request.json()
        authorization = request.headers.get("authorization")
        self.batches.append((request.query_params.get("region"), authorization, batch))
        files = batch["files"]
        answer = {
            name: {**entry, "put_url": f"{self.url}/put/{name}?sig=s"}
            for name, entry in files.items()
        }
        return JSONResponse({"result": {"id": 1, "files": answer}})

    async def put(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        self.puts.append((request.headers.get("content-type"), authorization, await request.body()))
        return Response(status_code=200)

    async def complete(self, request: Request) -> Response:
        self.completions += 1
        if self.times is None or self.completions <= self.times:
            return JSONResponse({}, status_code=409, headers={"X-Retry-After": "0"})
        return JSONResponse({}, status_code=202)


@pytest.fixture
def legacy_double(request: pytest.FixtureRequest, live_server: Any) -> LegacyCompletion:
    double = LegacyCompletion(request.param)
    server: LiveServer = live_server(double.app(), free_port())
    double.url = server.url
    return double


@pytest.mark.parametrize("legacy_double", [2], indirect=True)
def test_completion_waits_as_the_legacy_service_asks(
    legacy_double: LegacyCompletion, workdir: Path
) -> None:
    data = write("a.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    Path("token").write_text("a-token\n")
    run = cli(
        "--url", legacy_double.url, "--authentication-file", "token", "upload", "--message",
        "tools", "-r", "us-west-2",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    entry = {"size": len(data), "digest": digest_of(data), "algorithm": "sha512"}
    batch = {"message": "tools", "files": {"a.bin": {**entry, "visibility": "public"}}}
    assert legacy_double.batches == [("us-west-2", "Bearer a-token", batch)]
    # the signed URL gets the bytes and no credentials
    assert legacy_double.completions == 3
    assert legacy_double.puts == [("application/octet-stream", None, data)]
    assert run.lines.count("INFO - a.bin: waiting 0 seconds for the server to accept it") == 2
    assert "INFO - a.bin: uploaded" in run.lines


@pytest.mark.parametrize("legacy_double", [None], indirect=True)
def test_completion_gives_up_after_a_few_attempts(
    legacy_double: LegacyCompletion, workdir: Path
) -> None:
    write("a.bin")
    assert cli("add", "--visibility", "public", "a.bin").code == 0
    run = cli("--url", legacy_double.url, "upload", "--message", "tools")
    assert run.code == 0, run.stderr  # as the legacy client: the server finds it later
    assert legacy_double.completions == 5
    assert (
        "WARNING - a.bin: the server was not told the upload is complete (409); it finds it at"
        " its next pass"
    ) in run.lines
    assert "INFO - a.bin: uploaded" in run.lines


# change-visibility and delete


NOT_A_DIGEST = "is not a sha512 digest (128 lowercase hex digits)"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["change-visibility"], "change-visibility command requires a digest option"),
        (
            ["change-visibility", "--digest", "a" * 128],
            "change-visibility command requires a visibility option",
        ),
        (["delete"], "delete command requires a digest option"),
        (["delete", "--digest", "A" * 128], f"{'A' * 128!r} {NOT_A_DIGEST}"),
        (
            ["change-visibility", "--visibility", "public", "--digest", "abc"],
            f"'abc' {NOT_A_DIGEST}",
        ),
    ],
)
def test_management_checks_its_options_first(
    workdir: Path, closed_url: str, argv: list[str], line: str
) -> None:
    run = cli("--url", closed_url, *argv)
    assert (run.code, run.lines) == (1, [f"ERROR - {line}"])


def test_change_visibility_and_delete(live_gateway: LiveGateway, workdir: Path) -> None:
    data = write("tool.bin")
    digest = live_gateway.import_file(Path("tool.bin"), "public")
    region = "local" if live_gateway.store == "local" else "us-east-1"
    to_internal = ["change-visibility", "--digest", digest, "--visibility", "internal"]
    for client_id, refusal in (
        ("uploader", "403: no permission to manage files"),
        (None, "401: "),
    ):
        run = cli(*cli_args(live_gateway, client_id, *to_internal))
        assert run.code == 1
        assert len(run.lines) == 1
        assert run.lines[0].startswith(f"ERROR - change-visibility refused: {refusal}")
    assert live_gateway.status_of(digest) == 302
    run = cli(*cli_args(live_gateway, "admin", *to_internal))
    assert (run.code, run.lines) == (
        0,
        [f"INFO - {digest}: visibility set to internal (instances: {region})"],
    )
    assert live_gateway.status_of(digest) == 403
    assert live_gateway.download(digest, "reader") == data

    run = cli(*cli_args(live_gateway, "uploader", "delete", "--digest", digest))
    assert run.lines == ["ERROR - delete refused: 403: no permission to manage files"]
    run = cli(*cli_args(live_gateway, "admin", "delete", "--digest", digest))
    assert (run.code, run.lines) == (0, [f"INFO - {digest}: instances deleted (instances: none)"])
    assert live_gateway.status_of(digest, "reader") == 404
    run = cli(*cli_args(live_gateway, "admin", "delete", "--digest", "0" * 128))
    assert run.code == 1
    assert run.lines[0].startswith("ERROR - delete refused: 404")


# token


def test_token_printed_saved_and_reused(live_gateway: LiveGateway, workdir: Path) -> None:
    run = cli(*cli_args(live_gateway, "reader", "token"))
    assert run.code == 0, run.stderr
    token = run.stdout.strip()
    assert run.stdout == token + "\n"
    assert _JWT.fullmatch(token)
    assert_no_secret(run, token)
    assert run.lines == [
        f"INFO - token (expires {run.lines[0].split('expires ')[1].split(';')[0]};"
        f" scopes: {PREFIX}/download/internal, {PREFIX}/download/public)"
    ]

    Path("token").write_text("an old token\n")
    os.chmod("token", 0o644)
    run = cli(*cli_args(live_gateway, "reader", "token", "--token-file", "token"))
    assert (run.code, run.stdout) == (0, "")
    saved = Path("token").read_text()
    assert _JWT.fullmatch(saved.strip())
    assert saved.endswith("\n")
    assert stat.S_IMODE(os.stat("token").st_mode) == 0o600
    assert_no_secret(run, saved.strip())
    assert [p.name for p in workdir.iterdir()] == ["token"]  # no temporary file left

    # the saved token fetches an internal file
    data = write("internal.bin")
    digest = live_gateway.import_file(Path("internal.bin"), "internal")
    assert cli("add", "internal.bin").code == 0
    Path("internal.bin").unlink()
    run = cli("--url", live_gateway.url, "--authentication-file", "token", "fetch")
    assert run.code == 0, run.stderr
    assert Path("internal.bin").read_bytes() == data
    assert live_gateway.download(digest) == data


def test_a_token_uploads_and_narrows(live_gateway: LiveGateway, workdir: Path) -> None:
    run = cli(*cli_args(live_gateway, "uploader", "token", "--token-file", "up"))
    assert run.code == 0, run.stderr
    data = write("new.bin")
    assert cli("add", "--visibility", "internal", "new.bin").code == 0
    run = cli("--url", live_gateway.url, "--authentication-file", "up", "upload", "--message", "m")
    assert run.code == 0, run.stderr
    assert "INFO - new.bin: uploaded" in run.lines
    assert live_gateway.download(digest_of(data)) == data

    narrow = ["--scope", f"{PREFIX}/download/public", "--expires-in", "60"]
    run = cli(*cli_args(live_gateway, "uploader", "token", *narrow, "--token-file", "narrow"))
    assert run.code == 0, run.stderr
    assert f"; scopes: {PREFIX}/download/public)" in run.lines[0]
    Path("new.bin").unlink()
    run = cli("--url", live_gateway.url, "--authentication-file", "narrow", "fetch")
    assert run.code == 1
    assert "403" in run.stderr

    run = cli("--url", live_gateway.url, "--authentication-file", "narrow", "token")
    assert (run.code, run.stdout) == (1, "")
    assert run.lines == [
        "ERROR - a token cannot be exchanged for another: the authentication file holds a"
        " token, not Taskcluster credentials (clientId and accessToken)"
    ]


def test_token_needs_credentials(live_gateway: LiveGateway, workdir: Path) -> None:
    run = cli("--url", live_gateway.url, "token")
    assert (run.code, run.stdout) == (1, "")
    assert run.lines == [
        "ERROR - token command requires credentials: --authentication-file with a clientId"
        " and accessToken, or TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN"
    ]
    # the Taskcluster variables are credentials too
    environ = {
        "TASKCLUSTER_CLIENT_ID": "reader",
        "TASKCLUSTER_ACCESS_TOKEN": CLIENTS["reader"]["accessToken"],
    }
    run = cli("--url", live_gateway.url, "token", environ=environ)
    assert run.code == 0, run.stderr
    assert _JWT.fullmatch(run.stdout.strip())
    wrong = {**environ, "TASKCLUSTER_ACCESS_TOKEN": "wrong-access-token-0123456789"}
    run = cli("--url", live_gateway.url, "token", environ=wrong)
    assert (run.code, run.stdout) == (1, "")
    assert run.lines[0].startswith("ERROR - no token: 401: ")
    assert "wrong-access-token" not in run.stderr
    run = cli(*cli_args(live_gateway, "reader", "token", "--token-file", "nowhere/token"))
    assert (run.code, run.stdout) == (1, "")
    assert run.lines == [
        "ERROR - token file 'nowhere/token' cannot be written: No such file or directory"
    ]


# the console script


def test_the_console_script(start_live_gateway: GatewayStarter, tmp_path: Path) -> None:
    gateway = start_live_gateway("local")
    script = Path(sys.executable).parent / "tooltool"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TASKCLUSTER_", "TOOLTOOL_"))
    }

    def tooltool(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(script), *argv], cwd=tmp_path, env=environ, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stdout + done.stderr
        return done

    (tmp_path / "a.bin").write_bytes(os.urandom(1000))
    done = tooltool("add", "--visibility", "public", "a.bin")
    assert (done.returncode, done.stderr) == (0, "INFO - a.bin: added to the manifest\n")
    done = tooltool("--url", gateway.url, "upload")
    assert (done.returncode, done.stderr) == (1, "ERROR - upload command requires a message\n")
    done = tooltool(
        "--url", gateway.url, "token", "--authentication-file", gateway.auth("uploader")
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "token").write_text(done.stdout)
    done = tooltool(
        "upload", "--url", gateway.url, "--authentication-file", "token", "--message", "m"
    )
    assert done.returncode == 0, done.stderr
    assert "INFO - a.bin: uploaded\n" in done.stderr
    done = tooltool(
        "--url", gateway.url, "delete", "--digest", "0" * 128, "--authentication-file", "token"
    )
    assert (done.returncode, done.stderr) == (
        1,
        "ERROR - delete refused: 403: no permission to manage files\n",
    )
    done = tooltool("token", "--expires-in", "0")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1] == "tooltool: error: argument --expires-in: must be at least 1"
    )


_DEEP = b"[" * 100_000 + b"]" * 100_000  # JSON, nested past the parser's recursion limit


async def _deeply_nested(request: Request) -> Response:
    """200 to a POST, 500 to anything else: a JSON body nested too deep to parse."""
    status = 200 if request.method == "POST" else 500
    return Response(_DEEP, status_code=status, media_type="application/json")


@pytest.mark.parametrize(
    "command",
    [["fetch"], ["upload", "--message", "m"], ["delete", "--digest", "0" * 128], ["token"]],
)
def test_an_answer_nested_too_deep_is_one_line(
    workdir: Path, live_server: Any, command: list[str]
) -> None:
    """A server's answer nested deeper than the JSON parser goes is no JSON: one line, exit
    1, never a RecursionError's traceback."""
    app = Starlette(
        routes=[Route("/{path:path}", _deeply_nested, methods=["GET", "POST", "PATCH"])]
    )
    server: LiveServer = live_server(app, free_port())
    data = write("tool.bin")
    entry = {"filename": "tool.bin", "size": len(data), "algorithm": "sha512"}
    Path("manifest.tt").write_text(json.dumps([{**entry, "digest": digest_of(data)}]))
    if command == ["fetch"]:
        Path("tool.bin").unlink()
    Path("auth.json").write_text(json.dumps({"clientId": "c", "accessToken": "SECRET-access"}))
    quick = {"TOOLTOOL_RETRY_SECONDS": "0.01"}
    run = cli("--url", server.url, "--authentication-file", "auth.json", *command, environ=quick)
    assert run.code == 1
    assert_no_secret(run, "SECRET-access")
    assert run.lines[-1].startswith("ERROR - ")


def test_an_authentication_file_nested_too_deep_is_one_line(workdir: Path) -> None:
    Path("auth.json").write_bytes(_DEEP)
    run = cli("--url", "http://127.0.0.1:9/", "--authentication-file", "auth.json", "token")
    assert run.code == 1
    assert run.lines == [
        "ERROR - authentication file 'auth.json' is JSON without a clientId and accessToken"
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            '{"clientId": "a\\"b", "accessToken": "SECRET-access"}',
            "ERROR - the clientId 'a\"b' cannot be sent in a Hawk header",
        ),
        ("t\u00f6ken\u20ac", "ERROR - authentication file 'auth' holds no usable token"),
        ("tok\x1b[2Jen", "ERROR - authentication file 'auth' holds no usable token"),
    ],
)
def test_credentials_a_header_cannot_carry_are_one_line(
    workdir: Path, closed_url: str, content: str, error: str
) -> None:
    Path("auth").write_text(content, encoding="utf-8")
    run = cli("--url", closed_url, "--authentication-file", "auth", "delete", "--digest", "0" * 128)
    assert (run.code, run.lines) == (1, [error])
    assert_no_secret(run, "SECRET-access")
