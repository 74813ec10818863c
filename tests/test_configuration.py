"""Configuration mistakes: one clear line naming the setting, exit code 4, never a traceback.

Regression (review finding 10): ``PORT=abc``, a short ``TOOLTOOL_JWT_SECRET``
and a missing clients file printed tracebacks; ``TOOLTOOL_LOG_FORMAT=xml`` was
silently accepted; a bucket name under 3 characters was reported as a format
error; ``tooltool-indexer`` against an unreachable S3 endpoint printed a
traceback; ``make clean`` deleted the local store without warning.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent


def run(module: str, environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("S3_", "TOOLTOOL_", "TASKCLUSTER_")) and name not in ("PORT",)
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **environ},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], starts: str) -> None:
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]


@pytest.mark.parametrize(
    ("environ", "starts"),
    [
        ({"PORT": "abc"}, "SettingsError: PORT: expected a whole number, got 'abc'"),
        ({"PORT": "70000"}, "SettingsError: PORT: must be at least 0 and at most 65535"),
        (
            {"TOOLTOOL_JWT_SECRET": "short"},
            "SettingsError: TOOLTOOL_JWT_SECRET: must be at least 32 characters",
        ),
        (
            {"TOOLTOOL_CLIENTS_FILE": "/nonexistent/clients.json"},
            "SettingsError: TOOLTOOL_CLIENTS_FILE: cannot read /nonexistent/clients.json",
        ),
        (
            {"TOOLTOOL_LOG_FORMAT": "xml"},
            "SettingsError: TOOLTOOL_LOG_FORMAT: expected mozlog or text, got 'xml'",
        ),
        (
            {"S3_REGIONS": "us-east-1:ab"},
            "SettingsError: S3_REGIONS: bucket name 'ab' must be 3 to 63 characters long",
        ),
        (
            {"S3_REGIONS": "us-east-1:Bad_Bucket"},
            "SettingsError: S3_REGIONS: bucket name 'Bad_Bucket' may hold only",
        ),
        ({"TOOLTOOL_MAX_HEADER_LINE": "10"}, "SettingsError: TOOLTOOL_MAX_HEADER_LINE: "),
        ({"S3_READ_TIMEOUT": "soon"}, "SettingsError: S3_READ_TIMEOUT: expected a number"),
        ({"TOOLTOOL_MAX_PENDING_FILES": "0"}, "SettingsError: TOOLTOOL_MAX_PENDING_FILES: "),
        (
            {"S3_REGIONS": "us-east-1:bucket-a", "S3_ENDPOINT_URL": "http://h:abc"},
            "SettingsError: S3_ENDPOINT_URL: expected an http(s) URL",
        ),
        (
            {"S3_REGIONS": "us-east-1:bucket-a", "S3_ENDPOINT_URL": "http://u:pw-secret@h:1"},
            "SettingsError: S3_ENDPOINT_URL: a URL may not hold credentials",
        ),
        ({"S3_REGIONS": "a-:bucket-a"}, "SettingsError: S3_REGIONS: 'a-' is not a region"),
        ({"TASKCLUSTER_ROOT_URL": "http://[::1"}, "SettingsError: TASKCLUSTER_ROOT_URL: "),
        ({"TOOLTOOL_PUBLIC_URL": "http://h:99999"}, "SettingsError: TOOLTOOL_PUBLIC_URL: "),
        ({"S3_READ_TIMEOUT": "1e10"}, "SettingsError: S3_READ_TIMEOUT: must be between"),
        (
            {"TOOLTOOL_LOCAL_REGIONS": "east,West"},
            "SettingsError: TOOLTOOL_LOCAL_REGIONS: 'West' is not a region name",
        ),
        (
            {"TOOLTOOL_LOCAL_REGIONS": "east", "S3_REGIONS": "us-east-1:bucket-a"},
            "SettingsError: TOOLTOOL_LOCAL_REGIONS: set together with S3_REGIONS",
        ),
        (
            {"UPLOAD_EXPIRES_IN": "172800"},
            "SettingsError: UPLOAD_EXPIRES_IN: must be at least 1 and at most 82800",
        ),
        (
            {"DOWLOAD_EXPIRES_IN": "30", "TOOLTOOL_SIGNED_URL_REUSE_SECONDS": "30"},
            "SettingsError: TOOLTOOL_SIGNED_URL_REUSE_SECONDS: must be less than"
            " DOWLOAD_EXPIRES_IN (30), got 30",
        ),
        (
            {"CLOUDFRONT_URL": "https://d111111abcdef8.cloudfront.net"},
            "SettingsError: CLOUDFRONT_KEY_ID: required with CLOUDFRONT_URL",
        ),
        ({"TOOLTOOL_WORKERS": "0"}, "SettingsError: TOOLTOOL_WORKERS: must be at least 1"),
        (
            {"SENTRY_DSN": "http://sentry.example/1"},
            "SettingsError: SENTRY_DSN: expected a Sentry DSN (key as user, project id as path):"
            " Missing public key",
        ),
        ({"TOOLTOOL_WORKERS": "two"}, "SettingsError: TOOLTOOL_WORKERS: expected a whole number"),
        (
            {"TOOLTOOL_WORKERS": "2", "TOOLTOOL_JWT_SECRET": "short"},
            "SettingsError: TOOLTOOL_JWT_SECRET: must be at least 32 characters",
        ),
    ],
    ids=lambda value: str(value)[:40],
)
def test_the_gateway_names_the_bad_setting(
    tmp_path: Path, environ: dict[str, str], starts: str
) -> None:
    result = run("gateway.cli", {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), **environ})
    assert_one_line(result, starts)


def test_the_gateway_names_a_bad_workers_option(tmp_path: Path) -> None:
    result = run("gateway.cli", {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}, "--workers", "65")
    assert_one_line(result, "SettingsError: TOOLTOOL_WORKERS: must be at least 1 and at most 64")


def test_the_gateway_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "gateway.cli", {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "PORT": str(port)}
        )
    assert_one_line(result, f"ServerError: cannot listen on 127.0.0.1:{port}: ")


def test_the_indexer_names_an_unreachable_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    environ = {
        "S3_REGIONS": "us-east-1:bucket-a",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGIONS_ACCESS_KEY_ID": "x",
        "S3_REGIONS_SECRET_ACCESS_KEY": "y",
        "S3_CONNECT_TIMEOUT": "1",
        "S3_MAX_ATTEMPTS": "1",
    }
    for command in ("run", "failures"):
        result = run("indexer.cli", environ, command)
        assert_one_line(result, "StoreUnavailable: us-east-1: store unavailable: ")
        assert f"{endpoint}/bucket-a" in result.stderr


@pytest.mark.parametrize("command", ["run", "watch", "import"])
def test_the_indexer_names_bad_local_regions(tmp_path: Path, command: str) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path), "TOOLTOOL_LOCAL_REGIONS": "east,east"}
    arguments = [command] + (["--visibility", "public", __file__] if command == "import" else [])
    result = run("indexer.cli", environ, *arguments)
    assert_one_line(result, "SettingsError: TOOLTOOL_LOCAL_REGIONS: region east is listed twice")


def test_the_indexer_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path), "TOOLTOOL_LOG_FORMAT": "xml"}
    assert_one_line(run("indexer.cli", environ, "run"), "SettingsError: TOOLTOOL_LOG_FORMAT: ")


def test_make_clean_keeps_the_local_store() -> None:
    result = subprocess.run(
        ["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    )
    removals = [line for line in result.stdout.splitlines() if line.startswith("rm ")]
    assert removals
    assert not any("tooltool-data" in line for line in removals)
    assert (
        "rm -rf tooltool-data"
        in subprocess.run(
            ["make", "-n", "clean-data"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )


def test_a_key_of_the_wrong_curve_is_refused_at_start(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    environ = {
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "TOOLTOOL_JWT_ALGORITHM": "ES256",
        "TOOLTOOL_JWT_PRIVATE_KEY": str(pem),
    }
    result = run("gateway.cli", environ)
    assert_one_line(result, "SettingsError: TOOLTOOL_JWT_PRIVATE_KEY: unusable key for ES256")


def test_an_unreadable_cloudfront_key_is_named_not_shown(tmp_path: Path) -> None:
    environ = {
        "TOOLTOOL_DATA_DIR": str(tmp_path / "data"),
        "CLOUDFRONT_URL": "https://d111111abcdef8.cloudfront.net",
        "CLOUDFRONT_KEY_ID": "K2JCJMDEHXQW5F",
        "CLOUDFRONT_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA",
    }
    result = run("gateway.cli", environ)
    assert_one_line(result, "SettingsError: CLOUDFRONT_PRIVATE_KEY: not the PEM text of an RSA")
    assert "c2VjcmV0" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("name", "content", "starts"),
    [
        (".url-signing-key", b"short", "SettingsError: TOOLTOOL_URL_SIGNING_KEY: "),
        (".url-signing-key", b"\xff" * 40, "SettingsError: TOOLTOOL_URL_SIGNING_KEY: "),
        (".clients.json", b"[" * 100_000, "SettingsError: TOOLTOOL_CLIENTS_FILE: "),
    ],
    ids=["short-key", "not-utf8-key", "deep-clients"],
)
def test_bad_files_in_the_data_directory(
    tmp_path: Path, name: str, content: bytes, starts: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / name).write_bytes(content)
    assert_one_line(run("gateway.cli", {"TOOLTOOL_DATA_DIR": str(data)}), starts)


def test_the_indexer_refuses_intervals_that_are_not_finite(tmp_path: Path) -> None:
    for interval in ("nan", "inf", "-1"):
        result = run(
            "indexer.cli", {"TOOLTOOL_DATA_DIR": str(tmp_path)}, "watch", "--interval", interval
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


def test_an_interrupted_indexer_says_so_in_one_line(tmp_path: Path) -> None:
    environ = {
        "S3_REGIONS": "us-east-1:bucket-a",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "S3_REGIONS_ACCESS_KEY_ID": "x",
        "S3_REGIONS_SECRET_ACCESS_KEY": "y",
    }
    with socket.socket() as hung:  # accepts connections (the backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        environ["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{hung.getsockname()[1]}"
        process = subprocess.Popen(
            [sys.executable, "-m", "indexer.cli", "run"],
            env={**os.environ, **environ},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        import signal
        import time

        time.sleep(2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Interrupted: ")
