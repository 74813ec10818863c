"""Dockerflow endpoints, request ids, logs, unexpected errors, settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.requests import Request

from gateway.auth import Caller
from gateway.logs import configure_logging
from gateway.settings import Settings
from indexer.config import SettingsError
from indexer.s3_store import S3Store
from indexer.stores import Regions
from tests.conftest import SeaweedFS, unreachable_s3_store
from tests.gateway.conftest import Gateway
from tests.gateway.test_download import UNKNOWN, assert_problem


def test_lbheartbeat(gateway: Gateway) -> None:
    response = gateway.client().get("/__lbheartbeat__")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_heartbeat_checks_every_store(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway("us-east-1", "us-west-2")
    response = gateway.client().get("/__heartbeat__")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"store:us-east-1": "ok", "store:us-west-2": "ok"},
        "details": {},
    }


def test_heartbeat_reports_a_failed_store(gateway: Gateway, seaweedfs: SeaweedFS) -> None:
    missing = S3Store(seaweedfs.client(), "no-such-bucket", region="us-west-2")
    gateway.regions = Regions([*gateway.regions, missing])
    response = gateway.client().get("/__heartbeat__")
    body = assert_problem(response, 503)
    assert body["checks"] == {"store:local": "ok", "store:us-west-2": "error"}
    assert body["detail"] == "Failed checks: store:us-west-2"


def test_a_flood_of_heartbeats_checks_the_stores_once_per_interval(
    make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway(heartbeat_recheck_seconds=2)
    store = gateway.regions.index
    checks: list[None] = []
    real_check = store.check
    monkeypatch.setattr(store, "check", lambda: (checks.append(None), real_check())[1])
    clock = [1000.0]
    monkeypatch.setattr("gateway.dockerflow.time.monotonic", lambda: clock[0])
    client = gateway.client()
    assert all(client.get("/__heartbeat__").status_code == 200 for _ in range(50))
    assert len(checks) == 1
    clock[0] += 2
    (store.root / ".tmp").rmdir()  # the store fails: seen at the next interval
    assert_problem(client.get("/__heartbeat__"), 503)
    assert all(client.get("/__heartbeat__").status_code == 503 for _ in range(20))
    assert len(checks) == 2


def test_heartbeat_does_not_leak_paths(gateway: Gateway) -> None:
    store = gateway.regions.index
    (store.root / ".tmp").rmdir()
    response = gateway.client().get("/__heartbeat__")
    body = assert_problem(response, 503)
    assert body["checks"] == {"store:local": "error"}
    assert str(store.root) not in response.text


def test_version_from_file(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    version = {
        "source": "https://example/tooltool",
        "version": "1.2.3",
        "commit": "abc",
        "build": "",
    }
    (tmp_path / "version.json").write_text(json.dumps(version))
    gateway = make_gateway(version_file=tmp_path / "version.json")
    assert gateway.client().get("/__version__").json() == version


def test_version_from_package(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = make_gateway(version_file=tmp_path / "absent.json")
    body = gateway.client().get("/__version__").json()
    assert body["source"] == "tooltool"
    assert body["version"] == "0.1.0"


class ExplodingAuthenticator:
    async def authenticate(self, request: Request) -> Caller:
        raise RuntimeError("secret internal state /etc/tooltool")


def test_unexpected_errors_are_500_problems(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    response = gateway.client(authenticator=ExplodingAuthenticator()).get(f"/sha512/{UNKNOWN}")
    body = assert_problem(response, 500)
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"].startswith("The server encountered an internal error")
    logged = [record for record in caplog.records if record.exc_info]
    assert logged
    assert "RuntimeError" in caplog.text


def test_request_ids(gateway: Gateway) -> None:
    client = gateway.client()
    assert (
        client.get("/__lbheartbeat__", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = client.get(
        "/__lbheartbeat__",
        headers={"X-Request-Id": b"bad id\r" + "\u00e9".encode("latin-1")},
    ).headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/nope").headers["x-request-id"]


@pytest.fixture
def mozlog(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict]]]:
    """Configure mozlog logging on first use (pytest resets handlers between phases)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    started: list[bool] = []

    def records() -> list[dict]:
        if not started:
            started.append(True)
            configure_logging(log_format="mozlog")
            return []
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]

    yield records
    root.handlers[:], level = saved
    root.setLevel(level)


def test_mozlog_request_summary_with_request_id(
    gateway: Gateway, mozlog: Callable[[], list[dict]]
) -> None:
    mozlog()
    gateway.client().get(f"/sha512/{UNKNOWN}", headers={"X-Request-Id": "req-1"})
    summaries = [record for record in mozlog() if record["Type"] == "request.summary"]
    assert len(summaries) == 1
    fields = summaries[0]["Fields"]
    assert fields["rid"] == "req-1"
    assert fields["code"] == 404
    assert fields["method"] == "GET"
    assert summaries[0]["EnvVersion"] == "2.0"


def test_store_errors_are_logged_with_the_request_id(
    gateway: Gateway, mozlog: Callable[[], list[dict]]
) -> None:
    gateway.regions = Regions([unreachable_s3_store()])
    mozlog()
    gateway.client().get(f"/sha512/{UNKNOWN}", headers={"X-Request-Id": "req-2"})
    errors = [record for record in mozlog() if record["Severity"] <= 3]
    assert errors
    assert all(record["Fields"]["rid"] == "req-2" for record in errors)


class TestSettings:
    def test_defaults(self) -> None:
        settings = Settings.from_environ({})
        assert settings == Settings()
        assert settings.download_expires_in == 60
        assert settings.allow_anonymous_public_download is True
        assert settings.stores.is_local

    def test_legacy_download_expiry_name(self) -> None:
        assert Settings.from_environ({"DOWLOAD_EXPIRES_IN": "30"}).download_expires_in == 30
        both = {"DOWLOAD_EXPIRES_IN": "30", "DOWNLOAD_EXPIRES_IN": "45"}
        assert Settings.from_environ(both).download_expires_in == 45

    def test_signed_url_reuse(self) -> None:
        reuse = "TOOLTOOL_SIGNED_URL_REUSE_SECONDS"
        assert Settings.from_environ({}).signed_url_reuse_seconds == 5
        assert Settings.from_environ({"DOWNLOAD_EXPIRES_IN": "30"}).signed_url_reuse_seconds == 3
        assert Settings.from_environ({"DOWNLOAD_EXPIRES_IN": "9"}).signed_url_reuse_seconds == 0
        assert Settings.from_environ({reuse: "0"}).signed_url_reuse_seconds == 0
        assert Settings.from_environ({reuse: "59"}).signed_url_reuse_seconds == 59
        for bad in ("60", "-1", "soon"):
            with pytest.raises(SettingsError, match=f"^{reuse}: "):
                Settings.from_environ({reuse: bad})

    def test_values(self) -> None:
        settings = Settings.from_environ(
            {
                "ALLOW_ANONYMOUS_PUBLIC_DOWNLOAD": "false",
                "S3_REGIONS": "us-east-1:bucket-a; us-west-2:bucket-b",
                "S3_ENDPOINT_URL": "http://127.0.0.1",
                "TOOLTOOL_ROOT_PATH": "/tooltool/",
                "TOOLTOOL_SCOPE_PREFIX": "my:prefix/",
            }
        )
        assert settings.allow_anonymous_public_download is False
        assert settings.stores.s3_regions == (("us-east-1", "bucket-a"), ("us-west-2", "bucket-b"))
        assert settings.stores.s3_endpoint_url == "http://127.0.0.1:80"
        assert settings.root_path == "/tooltool"
        assert settings.scope_prefix == "my:prefix"

    @pytest.mark.parametrize(
        ("environ", "name"),
        [
            ({"DOWNLOAD_EXPIRES_IN": "soon"}, "DOWNLOAD_EXPIRES_IN"),
            ({"DOWLOAD_EXPIRES_IN": "0"}, "DOWLOAD_EXPIRES_IN"),
            ({"UPLOAD_EXPIRES_IN": "999999999"}, "UPLOAD_EXPIRES_IN"),
            ({"ALLOW_ANONYMOUS_PUBLIC_DOWNLOAD": "maybe"}, "ALLOW_ANONYMOUS_PUBLIC_DOWNLOAD"),
            ({"S3_REGIONS": "nocolon"}, "S3_REGIONS"),
            ({"TOOLTOOL_ROOT_PATH": "tooltool"}, "TOOLTOOL_ROOT_PATH"),
            ({"TOOLTOOL_SCOPE_PREFIX": "x:*"}, "TOOLTOOL_SCOPE_PREFIX"),
            ({"TOOLTOOL_PUBLIC_URL": "example.com"}, "TOOLTOOL_PUBLIC_URL"),
            ({"TOOLTOOL_INDEX_CACHE_SECONDS": "-1"}, "TOOLTOOL_INDEX_CACHE_SECONDS"),
        ],
    )
    def test_malformed_values_name_the_setting(self, environ: dict, name: str) -> None:
        with pytest.raises(SettingsError, match=f"^{name}: "):
            Settings.from_environ(environ)
