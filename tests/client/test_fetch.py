"""``tooltool fetch`` against a live gateway on either store, through its command line."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.client.fetch_helpers import (
    Blob,
    FetchGateway,
    assert_fetched,
    run_tooltool,
    tooltool_process,
    write_manifest,
)
from tests.conftest import free_port
from tests.gateway.auth_helpers import CLIENTS, basic

READER = {"clientId": "reader", "accessToken": CLIENTS["reader"]["accessToken"]}


def assert_one_line_failure(outcome_err: str, code: int) -> None:
    assert code == 1
    assert "Traceback" not in outcome_err
    assert "SECRET" not in outcome_err


def test_cold_fetch_without_cache(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public)
    # Nothing else is left behind: no part or lock files.
    assert sorted(p.name for p in workdir.iterdir()) == sorted(
        [*fetch_gateway.files, "manifest.tt"]
    )


def test_fetch_with_a_cache_links_its_entries(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    cache = workdir.parent / "cache"
    outcome = run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public)
    assert sorted(p.name for p in cache.iterdir()) == sorted(b.digest for b in fetch_gateway.public)
    for blob in fetch_gateway.public:
        assert (workdir / blob.name).stat().st_ino == (cache / blob.digest).stat().st_ino


def test_a_warm_cache_asks_the_server_nothing(
    fetch_gateway: FetchGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        write_manifest(folder, fetch_gateway.public)
        monkeypatch.chdir(folder)
        asked = len(fetch_gateway.proxy.seen)
        outcome = run_tooltool(["--url", fetch_gateway.url, "-c", str(cache), "fetch"])
        assert outcome.code == 0, outcome.stderr
        assert_fetched(folder, fetch_gateway.public)
    assert len(fetch_gateway.proxy.seen) == asked
    assert "from the cache" in outcome.stderr


def test_files_present_and_valid_are_kept_without_asking(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    for blob in fetch_gateway.public:
        (workdir / blob.name).write_bytes(blob.data)
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert fetch_gateway.proxy.seen == []
    assert "present and valid" in outcome.stderr


def test_a_present_invalid_file_is_replaced(fetch_gateway: FetchGateway, workdir: Path) -> None:
    blob = fetch_gateway.files["small.bin"]
    (workdir / blob.name).write_bytes(b"not the bytes")
    write_manifest(workdir, [blob])
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [blob])
    assert "small.bin is present but invalid: it will be replaced" in outcome.stderr


def test_only_the_files_named(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch", "small.bin"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [fetch_gateway.files["small.bin"]])
    assert not (workdir / "medium.bin").exists()


def test_a_name_not_in_the_manifest(workdir: Path) -> None:
    write_manifest(workdir, [Blob("a.bin", b"a")])
    outcome = run_tooltool(["--url", f"http://127.0.0.1:{free_port()}/", "fetch", "b.bin"])
    assert_one_line_failure(outcome.stderr, outcome.code)
    assert outcome.lines == ["ERROR - not in the manifest: b.bin"]


def test_internal_file_without_credentials(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, [fetch_gateway.internal])
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert_one_line_failure(outcome.stderr, outcome.code)
    # The gateway's own 403 problem, its detail the legacy description: one line a file,
    # then the legacy summary.
    assert [line for line in outcome.lines if not line.startswith("INFO - ")] == [
        f"ERROR - internal.bin: {fetch_gateway.url}: 403: You don't have the permission to"
        " access the requested resource. It is either read-protected or not readable by the"
        " server.",
        "ERROR - The following files failed: 'internal.bin'",
    ]
    assert not (workdir / "internal.bin").exists()


def test_internal_file_with_hawk_credentials(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, [fetch_gateway.internal])
    (workdir.parent / "auth.json").write_text(json.dumps(READER))
    auth = ["--authentication-file", str(workdir.parent / "auth.json")]
    outcome = run_tooltool(["--url", fetch_gateway.url, *auth, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [fetch_gateway.internal])
    assert READER["accessToken"] not in outcome.stderr


def test_internal_file_with_taskcluster_variables(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    write_manifest(workdir, [fetch_gateway.internal])
    environ = {
        "TASKCLUSTER_CLIENT_ID": READER["clientId"],
        "TASKCLUSTER_ACCESS_TOKEN": READER["accessToken"],
    }
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"], environ)
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [fetch_gateway.internal])


def test_internal_file_with_a_bearer_token_file(fetch_gateway: FetchGateway, workdir: Path) -> None:
    request = urllib.request.Request(
        fetch_gateway.direct_url + "token",
        method="POST",
        headers={"Authorization": basic("reader")},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        token = json.load(answer)["token"]
    (workdir.parent / "token").write_text(token + "\n")
    write_manifest(workdir, [fetch_gateway.internal])
    auth = ["--authentication-file", str(workdir.parent / "token")]
    outcome = run_tooltool(["--url", fetch_gateway.url, *auth, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [fetch_gateway.internal])
    assert token not in outcome.stderr


def test_region_is_asked_for(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, [fetch_gateway.files["small.bin"]])
    outcome = run_tooltool(["--url", fetch_gateway.url, "--region", "us-west-2", "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [fetch_gateway.files["small.bin"]])
    asked = [path for _, path in fetch_gateway.proxy.seen if "region=us-west-2" in path]
    assert asked, fetch_gateway.proxy.seen


def test_falls_over_to_the_next_url(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    down = f"http://127.0.0.1:{free_port()}/"
    outcome = run_tooltool(["--url", down, "--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public)


def test_every_url_down(workdir: Path) -> None:
    blobs = [Blob("a.bin", b"a"), Blob("b.bin", b"b")]
    write_manifest(workdir, blobs)
    urls = [f"http://127.0.0.1:{free_port()}/" for _ in range(2)]
    outcome = run_tooltool(["--url", urls[0], "--url", urls[1], "fetch"])
    assert_one_line_failure(outcome.stderr, outcome.code)
    errors = [line for line in outcome.lines if line.startswith("ERROR - ")]
    assert len(errors) == 3, outcome.stderr  # one per file, then the legacy summary
    assert errors[-1] == "ERROR - The following files failed: 'a.bin', 'b.bin'"
    for line in errors[:2]:
        assert "Connection refused" in line
    assert sorted(p.name for p in workdir.iterdir()) == ["manifest.tt"]


def test_legacy_server_without_resolve_is_asked_file_by_file(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    fetch_gateway.proxy.legacy = True
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["-v", "--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public)
    assert "has no batch resolve: asking file by file" in outcome.stderr
    assert len(fetch_gateway.proxy.paths("POST", "/resolve")) == 1
    located = fetch_gateway.proxy.paths("GET", "/sha512/")
    assert sorted(located) == sorted(f"/sha512/{b.digest}" for b in fetch_gateway.public)


def test_resolve_or_fallback_whichever_the_gateway_has(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    """Until the gateway has ``POST /resolve`` the client asks file by file; after, never."""
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["-v", "--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert len(fetch_gateway.proxy.paths("POST", "/resolve")) == 1
    located = fetch_gateway.proxy.paths("GET", "/sha512/")
    if "asking file by file" in outcome.stderr:
        assert len(located) == len(fetch_gateway.public)
    else:
        assert located == []


def test_two_records_with_the_same_digest(fetch_gateway: FetchGateway, workdir: Path) -> None:
    blob = fetch_gateway.files["small.bin"]
    twin = Blob("twin.bin", blob.data)
    write_manifest(workdir, [blob, twin])
    outcome = run_tooltool(["--url", fetch_gateway.url, "--jobs", "4", "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [blob, twin])
    assert len(fetch_gateway.proxy.paths("GET", f"/sha512/{blob.digest}")) <= 1
    assert "twin.bin: copied from small.bin" in outcome.stderr


def test_a_zero_byte_file(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, [fetch_gateway.files["empty.bin"]])
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert (workdir / "empty.bin").read_bytes() == b""


@pytest.mark.parametrize("jobs", ["1", "16"])
def test_jobs(fetch_gateway: FetchGateway, workdir: Path, jobs: str) -> None:
    write_manifest(workdir, fetch_gateway.public)
    outcome = run_tooltool(["--url", fetch_gateway.url, "--jobs", jobs, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, fetch_gateway.public)


def test_the_console_script_fetches(fetch_gateway: FetchGateway, workdir: Path) -> None:
    write_manifest(workdir, fetch_gateway.public)
    process = tooltool_process(["--url", fetch_gateway.url, "fetch"], workdir)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert_fetched(workdir, fetch_gateway.public)


MANIFEST_ERRORS = {
    "missing": (None, "manifest file 'manifest.tt' does not exist"),
    "not JSON": ("{not json", "trying to read invalid manifest file"),
    "bad digest": ([{**Blob("a", b"a").record(), "digest": "abc"}], "is not a sha512 digest"),
    "path": ([Blob("../x", b"a").record()], "contains path information"),
    "duplicate": ([Blob("a", b"a").record(), Blob("a", b"b").record()], "is listed twice"),
    "escape": ([Blob("\x1b[2Ja", b"a").record()], "'\\x1b[2Ja' contains control characters"),
    "C1 escape": ([Blob("\x9b2Ja", b"a").record()], "'\\x9b2Ja' contains control characters"),
    "surrogate": ([Blob("\ud800x", b"a").record()], "'\\ud800x' is not valid Unicode"),
    "ours": (
        [Blob(f".tooltool-{'a' * 128}.lock", b"a").record()],
        "starts with '.tooltool-', kept for tooltool",
    ),
    "bidi": ([Blob("a\u202egpj.exe", b"a").record()], "'a\\u202egpj.exe' contains control"),
}


@pytest.mark.parametrize("case", MANIFEST_ERRORS)
def test_manifest_errors(workdir: Path, case: str) -> None:
    content, message = MANIFEST_ERRORS[case]
    if content is not None:
        text = content if isinstance(content, str) else json.dumps(content)
        (workdir / "manifest.tt").write_text(text)
    outcome = run_tooltool(["--url", f"http://127.0.0.1:{free_port()}/", "fetch"])
    assert_one_line_failure(outcome.stderr, outcome.code)
    assert len(outcome.lines) == 1, outcome.stderr
    assert outcome.lines[0].startswith("ERROR - ")
    assert message in outcome.lines[0]


def test_a_working_folder_that_cannot_be_written(
    fetch_gateway: FetchGateway, workdir: Path
) -> None:
    blob = fetch_gateway.files["small.bin"]
    (workdir / f".tooltool-{blob.digest}.lock").mkdir()  # where the claim goes: no claim
    write_manifest(workdir, [blob])
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert_one_line_failure(outcome.stderr, outcome.code)
    assert outcome.lines[-2].startswith("ERROR - small.bin: '")
    assert outcome.lines[-2].endswith(".lock' cannot be written: Is a directory")
    assert not (workdir / blob.name).exists()


@pytest.mark.parametrize("left", ["a prefix", "other bytes"])
def test_a_part_file_left_behind_is_resumed_or_replaced(
    fetch_gateway: FetchGateway, workdir: Path, left: str
) -> None:
    """A part file of an earlier run: resumed from the store with Range when it holds the
    file's first bytes; when it holds other bytes, the result does not match, and the
    file is fetched again whole."""
    blob = fetch_gateway.files["medium.bin"]
    part = workdir / f".tooltool-{blob.digest}.part"
    part.write_bytes(blob.data[:100_000] if left == "a prefix" else b"x" * 100_000)
    write_manifest(workdir, [blob])
    outcome = run_tooltool(["--url", fetch_gateway.url, "fetch"])
    assert outcome.code == 0, outcome.stderr
    assert_fetched(workdir, [blob], only=True)
    if fetch_gateway.store == "local":  # its blobs are served through the proxy too
        ranges = [r for r in fetch_gateway.proxy.ranges if r is not None]
        assert ranges == ["bytes=100000-"]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://host/", "ERROR - --url 'ftp://host/' is not an http or https URL"),
        ("http://[::1", "ERROR - --url 'http://[::1' is not an http or https URL"),
        ("http://host:99999/", "ERROR - --url 'http://host:99999/' is not an http or https URL"),
        (
            "https://user:PASSWORD@host/",
            "ERROR - a --url holds a user name or password, which is never sent:"
            " give credentials with --authentication-file",
        ),
    ],
)
def test_a_url_that_cannot_be_used_is_one_line(workdir: Path, url: str, error: str) -> None:
    write_manifest(workdir, [Blob("a", b"a")])
    outcome = run_tooltool(["--url", url, "fetch"])
    assert (outcome.code, outcome.lines) == (1, [error])
